#include "tests/support/server_env.hpp"

#include <array>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <random>
#include <sstream>
#include <stdexcept>

#include "core/encoding.hpp"
#include "core/tokens/format.hpp"

namespace kw::test {

namespace {

std::string required(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        throw std::runtime_error(std::string(name) + " is not set: run through tests/server_http_test.sh");
    }
    return v;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

const ServerEnv& server_env() {
    static const ServerEnv env = [] {
        ServerEnv e;
        e.host = required("KW_HTTP_HOST");
        e.port = static_cast<std::uint16_t>(std::stoi(required("KW_HTTP_PORT")));
        e.socket = required("KW_HTTP_SOCKET");
        std::ifstream in(required("KW_ADMIN_TOKEN_FILE"));
        std::stringstream ss;
        ss << in.rdbuf();
        e.admin = trim(ss.str());
        if (e.admin.empty()) throw std::runtime_error("KW_ADMIN_TOKEN_FILE is empty");
        if (const char* t = std::getenv("KW_REQUEST_TIMEOUT_S")) e.request_timeout_s = std::atoi(t);
        return e;
    }();
    return env;
}

HttpClient tcp_client() {
    return HttpClient::tcp(server_env().host, server_env().port);
}

HttpClient unix_client() {
    return HttpClient::unix_socket(server_env().socket);
}

HttpResponse call(std::string_view method, std::string_view target, std::string_view body, std::string_view bearer) {
    auto c = tcp_client();
    return c.request(method, target, body, bearer);
}

nlohmann::json admin_call(std::string_view method, std::string_view target, const nlohmann::json& body, int want) {
    const std::string text = body.is_null() ? std::string() : body.dump();
    auto r = call(method, target, std::string_view(text), server_env().admin);
    if (r.status != want) {
        throw std::runtime_error(std::string(method) + " " + std::string(target) + ": HTTP " +
                                 std::to_string(r.status) + ", want " + std::to_string(want) + ": " + r.body);
    }
    return r.json();
}

nlohmann::json issue_token(const nlohmann::json& request) {
    return admin_call("POST", "/v1/admin/tokens", request, 201);
}

std::string unknown_token() {
    std::random_device rd;
    std::array<std::uint8_t, core::tokens::kRandomBytes> bytes{};
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rd());
    return core::tokens::format_token("kw_live", bytes);
}

std::string b64(std::string_view bytes) {
    return core::to_base64(core::as_bytes(bytes));
}

std::string b64url_decode(std::string_view text) {
    std::string s(text);
    for (auto& c : s) c = c == '-' ? '+' : (c == '_' ? '/' : c);
    while (s.size() % 4 != 0) s.push_back('=');
    auto bytes = core::from_base64(s);
    if (!bytes) throw std::runtime_error("not base64url: " + std::string(text));
    return {bytes->begin(), bytes->end()};
}

std::int64_t parse_utc(const std::string& iso) {
    std::tm tm{};
    std::istringstream in(iso);
    in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
    if (in.fail()) throw std::runtime_error("not a UTC time: " + iso);
    return static_cast<std::int64_t>(timegm(&tm));
}

std::int64_t unix_now() {
    return static_cast<std::int64_t>(std::time(nullptr));
}

const World& world() {
    static const World w = [] {
        World x;
        admin_call("POST", "/v1/admin/keys", {{"name", "c-ecdsa"}, {"type", "ecdsa"}}, 201);
        admin_call("POST", "/v1/admin/keys", {{"name", "c-rsa"}, {"type", "rsa"}, {"size", 2048}}, 201);
        admin_call("POST", "/v1/admin/keys", {{"name", "c-hmac"}, {"type", "hmac"}}, 201);
        auto jwt = admin_call("POST", "/v1/admin/keys", {{"name", "c-jwt"}, {"type", "jwt"}, {"alg", "ES256"}}, 201);
        x.jwt_kid = jwt["versions"][0]["kid"];
        auto svc = issue_token({{"name", "c-svc"}, {"scopes", {"sign:c-*", "verify:c-*"}}});
        x.svc = svc["token"];
        x.svc_kid = svc["versions"][0]["kid"];
        // The tests use this credential hundreds of times a second (keep-alive,
        // concurrency), far past the default 100/s that every use spends from.
        admin_call("PUT", "/v1/admin/limits",
                   {{"token_kid", x.svc_kid}, {"limit", 1000000}, {"period_ms", 1000}, {"burst", 1000000}});
        x.narrow = issue_token({{"name", "c-narrow"}, {"scopes", {"verify:c-*"}}})["token"];
        return x;
    }();
    return w;
}

}  // namespace kw::test
