// keywardend through the C++ client: malformed and hostile requests. Each
// must get its documented answer (or a closed connection), and the daemon
// must keep serving others meanwhile.
#include <doctest/doctest.h>

#include <future>

#include "tests/support/server_env.hpp"

using namespace kw::test;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

void check_error(const HttpResponse& r, int status, const std::string& code) {
    INFO("body: " << r.body);
    CHECK(r.status == status);
    CHECK(r.error_code() == code);
}

// The status line and the error code of a raw answer.
bool answered(const RawResult& r, const std::string& status_line, const std::string& code) {
    return r.received.rfind(status_line + "\r\n", 0) == 0 &&
           r.received.find("\"code\":\"" + code + "\"") != std::string::npos;
}

}  // namespace

TEST_CASE("garbage bytes instead of HTTP: 400, then the connection closes") {
    auto c = tcp_client();
    // A TLS ClientHello's first bytes: someone speaking https to plain http.
    c.send_raw(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 24));
    auto r = c.read_until_close(milliseconds(5000));
    INFO(r.received);
    CHECK(r.closed);
    CHECK(answered(r, "HTTP/1.1 400 Bad Request", "BAD_REQUEST"));
    CHECK(call("GET", "/healthz").status == 200);
}

TEST_CASE("truncated body (Content-Length larger than what is sent, then EOF), over the unix socket") {
    auto c = unix_client();
    c.send_raw(
        "POST /v1/tokens/verify HTTP/1.1\r\nHost: kw\r\nContent-Type: application/json\r\n"
        "Content-Length: 64\r\n\r\n{\"token\": \"kw_li");
    c.shutdown_send();
    auto r = c.read_until_close(milliseconds(5000));
    INFO(r.received);
    CHECK(r.closed);
    CHECK(answered(r, "HTTP/1.1 400 Bad Request", "BAD_REQUEST"));
    // A truncated body that never ends is cut by the request deadline instead
    // (covered with slow headers below).
}

TEST_CASE("bad JSON, wrong types and unknown fields get 400 with their code") {
    const auto& w = world();
    const auto& a = server_env().admin;
    check_error(call("POST", "/v1/tokens/verify", std::string_view("{\"token\": }")), 400, "BAD_JSON");
    check_error(call("POST", "/v1/tokens/verify", std::string_view("{\"token\": \"x\"} trailing")), 400, "BAD_JSON");
    check_error(call("POST", "/v1/tokens/verify", std::string_view("\"just a string\"")), 400, "BAD_TYPE");
    check_error(call("POST", "/v1/keys/c-hmac/hmac", std::string_view("{\"data\": \"AAAA\""), w.svc), 400, "BAD_JSON");
    check_error(call("POST", "/v1/keys/c-hmac/hmac", std::string_view(""), w.svc), 400, "EMPTY_BODY");

    check_error(call("POST", "/v1/keys/c-hmac/hmac", json{{"data", json::array()}}, w.svc), 400, "BAD_TYPE");
    check_error(call("POST", "/v1/keys/c-hmac/hmac", json{{"data", "AA=="}, {"encoding", 1}}, w.svc), 400, "BAD_TYPE");
    check_error(call("POST", "/v1/tokens/verify", json{{"token", w.svc}, {"cost", 1.5}}), 400, "BAD_TYPE");
    check_error(call("POST", "/v1/admin/keys", json{{"name", 5}, {"type", "hmac"}}, a), 400, "BAD_TYPE");
    check_error(call("POST", "/v1/admin/keys", json{{"name", "c-bad"}, {"type", "hmac"}, {"labels", {1, 2}}}, a), 400,
                "BAD_TYPE");
    check_error(call("POST", "/v1/admin/tokens", json{{"name", "c-bad"}, {"max_uses", "10"}}, a), 400, "BAD_TYPE");

    check_error(call("POST", "/v1/keys/c-hmac/hmac", json{{"data", "AA=="}, {"dta", 1}}, w.svc), 400, "UNKNOWN_FIELD");
    check_error(call("POST", "/v1/jwt/c-jwt/sign", json{{"claims", json::object()}, {"kid", "x"}}, w.svc), 400,
                "UNKNOWN_FIELD");
    check_error(call("POST", "/v1/admin/tokens", json{{"name", "c-bad"}, {"scope", "admin"}}, a), 400, "UNKNOWN_FIELD");
    check_error(call("PUT", "/v1/admin/limits", json{{"limit", 5}, {"per", "second"}}, a), 400, "UNKNOWN_FIELD");
    // None of the refused requests made anything.
    check_error(call_get("/v1/admin/keys/c-bad", a), 404, "KEY_NOT_FOUND");
}

TEST_CASE("oversize body: 413 from the Content-Length alone, and for a body one byte over 1 MiB") {
    // Only the headers are sent: the answer must not wait for 10 MiB.
    auto c = tcp_client();
    c.send_raw("POST /v1/tokens/verify HTTP/1.1\r\nHost: kw\r\nContent-Length: 10485760\r\n\r\n");
    auto r = c.read_until_close(milliseconds(5000));
    INFO(r.received);
    CHECK(r.closed);
    CHECK(r.elapsed < milliseconds(2000));
    CHECK(answered(r, "HTTP/1.1 413 Payload Too Large", "BODY_TOO_LARGE"));

    const std::string over(1024 * 1024 + 1, 'a');
    auto big = unix_client();
    auto res = big.request("POST", "/v1/tokens/verify", over);
    check_error(res, 413, "BODY_TOO_LARGE");
    CHECK(!res.keep_alive);
    CHECK(!big.connected());
    const std::string at_limit(1024 * 1024, ' ');
    check_error(call("POST", "/v1/tokens/verify", std::string_view(at_limit)), 400, "BAD_JSON");
}

TEST_CASE("a bad percent escape in the query is refused, and the daemon lives on") {
    auto r = call_get("/v1/admin/audit?key=%zz", server_env().admin);
    check_error(r, 400, "BAD_REQUEST");
    auto r2 = call("GET", "/healthz?x=%4");
    CHECK(r2.status == 400);
    CHECK(call("GET", "/healthz").status == 200);
}

TEST_CASE("slow headers (slowloris): the connection is closed at the request deadline") {
    const auto deadline = milliseconds(server_env().request_timeout_s * 1000);
    // Meanwhile the daemon answers others at once.
    auto probe = std::async(std::launch::async, [] {
        std::vector<long> ms;
        for (int i = 0; i < 8; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            auto r = call("GET", "/healthz");
            ms.push_back(r.status == 200
                             ? std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count()
                             : -1);
            std::this_thread::sleep_for(milliseconds(1000));
        }
        return ms;
    });
    auto c = unix_client();
    const std::string head = "GET /healthz HTTP/1.1\r\nHost: kw\r\nX-Slow: " + std::string(64, 'z');
    auto r = c.drip(head, milliseconds(500), deadline + milliseconds(5000));
    INFO("received: " << r.received << " after " << r.elapsed.count() << " ms");
    CHECK(r.closed);
    CHECK(r.received.empty());  // cut, not answered: no complete request ever arrived
    CHECK(r.elapsed >= deadline - milliseconds(1000));
    CHECK(r.elapsed <= deadline + milliseconds(2000));
    for (long ms : probe.get()) {
        CHECK(ms >= 0);
        CHECK(ms < 1000);
    }
}
