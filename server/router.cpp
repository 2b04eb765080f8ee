#include <chrono>

#include "core/error.hpp"
#include "server/app.hpp"
#include "token/error.hpp"

namespace kw::server {
namespace {

bool starts_with(const std::string& s, const std::string& p) {
    return s.rfind(p, 0) == 0;
}

// "/v1/keys/NAME/sign" -> NAME when the suffix matches.
std::optional<std::string> key_route(const std::string& target, const std::string& prefix, const std::string& suffix) {
    if (!starts_with(target, prefix) || target.size() <= prefix.size() + suffix.size()) return std::nullopt;
    if (target.compare(target.size() - suffix.size(), suffix.size(), suffix) != 0) return std::nullopt;
    std::string name = target.substr(prefix.size(), target.size() - prefix.size() - suffix.size());
    if (name.find('/') != std::string::npos && suffix.empty()) return std::nullopt;
    return name;
}

Response error(int status, const std::string& code, const std::string& message) {
    return Response::json({{"error", {{"code", code}, {"message", message}}}}, status);
}

Response dispatch(App& app, const Request& r) {
    const std::string& t = r.target;
    const bool post = r.method == "POST";
    const bool get = r.method == "GET";
    if (get && t == "/healthz") return healthz(app, r);
    if (get && t == "/readyz") return readyz(app, r);
    if (get && t == "/metrics") return metrics(app, r);
    if (get && t == "/.well-known/jwks.json") return jwks(app, r);
    if (post && t == "/v1/tokens/verify") return tokens_verify(app, r);
    if (post && t == "/v1/tokens/verify:batch") return tokens_verify_batch(app, r);
    if (post) {
        if (auto n = key_route(t, "/v1/keys/", "/sign")) return key_sign(app, r, *n);
        if (auto n = key_route(t, "/v1/keys/", "/verify")) return key_verify(app, r, *n);
        if (auto n = key_route(t, "/v1/keys/", "/hmac")) return key_hmac(app, r, *n);
        if (auto n = key_route(t, "/v1/jwt/", "/sign")) return jwt_sign(app, r, *n);
    }
    if (starts_with(t, "/v1/admin/")) return admin(app, r, t.substr(std::string("/v1/admin").size()));
    throw ApiError(404, "NOT_FOUND", "no endpoint " + r.method + " " + t);
}

}  // namespace

Response handle(App& app, const Request& r) {
    const auto start = std::chrono::steady_clock::now();
    Response resp;
    try {
        resp = dispatch(app, r);
    } catch (const ApiError& e) {
        nlohmann::json j = e.fields();
        j["error"] = {{"code", e.code()}, {"message", e.what()}};
        resp = Response::json(j, e.status());
        resp.headers = e.headers();
    } catch (const core::Error& e) {
        using K = core::ErrorKind;
        switch (e.kind()) {
            case K::not_found: resp = error(404, "KEY_NOT_FOUND", e.what()); break;
            case K::already_exists: resp = error(409, "ALREADY_EXISTS", e.what()); break;
            case K::invalid_argument: resp = error(400, "INVALID_ARGUMENT", e.what()); break;
            case K::not_permitted: resp = error(409, "NOT_PERMITTED", e.what()); break;
            case K::store_locked: resp = error(503, "STORE_BUSY", e.what()); break;
            case K::audit_failure: resp = error(503, "AUDIT_UNAVAILABLE", e.what()); break;
            default: resp = error(500, "INTERNAL", e.what()); break;
        }
        if (e.kind() == K::audit_failure) note_audit_failure(app, e.what());
    } catch (const token::Pkcs11Error& e) {
        app.metrics.inc("keywarden_hsm_errors_total", {{"rv", e.name()}});
        resp = error(502, "HSM_ERROR", e.what());
    } catch (const std::exception& e) {
        resp = error(500, "INTERNAL", e.what());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Route label without key names, so the series count stays bounded.
    std::string route = r.target;
    if (starts_with(route, "/v1/keys/")) route = "/v1/keys/{name}/" + route.substr(route.rfind('/') + 1);
    if (starts_with(route, "/v1/jwt/")) route = "/v1/jwt/{name}/sign";
    if (starts_with(route, "/v1/admin/")) route = "/v1/admin";
    static const std::set<std::string> routes{"/healthz",
                                              "/readyz",
                                              "/metrics",
                                              "/.well-known/jwks.json",
                                              "/v1/tokens/verify",
                                              "/v1/tokens/verify:batch",
                                              "/v1/keys/{name}/sign",
                                              "/v1/keys/{name}/verify",
                                              "/v1/keys/{name}/hmac",
                                              "/v1/jwt/{name}/sign",
                                              "/v1/admin"};
    if (!routes.contains(route)) route = "other";  // unknown paths must not create series
    app.metrics.inc("keywarden_http_requests_total", {{"route", route}, {"status", std::to_string(resp.status)}});
    app.metrics.observe("keywarden_http_request_seconds", {{"route", route}}, seconds);
    return resp;
}

}  // namespace kw::server
