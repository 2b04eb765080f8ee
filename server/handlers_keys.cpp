// POST /v1/keys/{name}/sign|verify|hmac, POST /v1/jwt/{name}/sign, GET /.well-known/jwks.json
#include <chrono>

#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/jwt/jwt.hpp"
#include "server/app.hpp"

namespace kw::server {
namespace {

std::vector<std::uint8_t> data_of(const nlohmann::json& body) {
    const std::string encoding = optional_string(body, "encoding").value_or("base64");
    const std::string data = require_string(body, "data");
    if (encoding == "utf8") return {data.begin(), data.end()};
    if (encoding != "base64") throw ApiError(400, "BAD_ENCODING", "encoding must be base64 or utf8");
    auto raw = core::from_base64(data);
    if (!raw) throw ApiError(400, "BAD_BASE64", "'data' is not valid base64");
    return *raw;
}

core::SignOptions options_of(const nlohmann::json& body) {
    core::SignOptions o;
    if (auto p = optional_string(body, "padding")) {
        if (*p == "pss")
            o.rsa_padding = core::RsaPadding::pss;
        else if (*p != "pkcs1")
            throw ApiError(400, "BAD_PADDING", "padding must be pkcs1 or pss");
    }
    if (auto f = optional_string(body, "format")) {
        if (*f == "raw")
            o.format = core::SignatureFormat::raw;
        else if (*f != "der")
            throw ApiError(400, "BAD_FORMAT", "format must be der or raw");
    }
    o.caller = optional_string(body, "caller");
    return o;
}

// A caller may use a key with scope "sign:<name>" (globs allowed) or "admin".
core::tokens::Verification caller_for(App& app, const Request& r, const std::string& verb, const std::string& name) {
    auto v = authorize(app, r, verb + ":" + name);
    auto d = app.key_limits.take(name);
    if (!d.allowed) {
        app.metrics.inc("keywarden_rate_limit_denials_total", {{"scope", "key"}});
        audit_rate_limited(app, name, "", verb, {{"caller", v.kid}});
        throw rate_limited_error(
            d, "key '" + name + "' is over its rate limit; retry in " + std::to_string(d.retry_after_ms) + " ms");
    }
    return v;
}

Response sign_response(App& app, const Request& r, const std::string& name, const char* field, const char* verb) {
    auto body = parse_body(r, {"data", "encoding", "padding", "format", "caller"});
    auto caller = caller_for(app, r, "sign", name);
    // Only an authorised caller learns what kind of key this is.
    if (std::string_view(verb) == "hmac" && core::family_of(app.keys.get(name)) != core::Family::hmac) {
        throw ApiError(400, "NOT_HMAC", "'" + name + "' is not an HMAC key");
    }
    auto opts = options_of(body);
    if (!opts.caller) opts.caller = caller.kid;
    auto s = app.keys.sign(name, data_of(body), opts);
    app.metrics.observe("keywarden_hsm_operation_seconds", {{"op", verb}}, s.hsm_seconds);
    return Response::json({{field, core::to_base64(s.signature)},
                           {"kid", s.kid},
                           {"version", s.version},
                           {"mechanism", token::to_string(s.mechanism)}});
}

}  // namespace

Response key_sign(App& app, const Request& r, const std::string& name) {
    return sign_response(app, r, name, "signature", "sign");
}

Response key_hmac(App& app, const Request& r, const std::string& name) {
    return sign_response(app, r, name, "mac", "hmac");
}

Response key_verify(App& app, const Request& r, const std::string& name) {
    auto body = parse_body(r, {"data", "encoding", "signature", "kid", "padding", "format"});
    auto v = authorize(app, r, "verify:" + name);
    (void)v;
    auto sig = core::from_base64(require_string(body, "signature"));
    if (!sig) throw ApiError(400, "BAD_BASE64", "'signature' is not valid base64");
    auto kid = optional_string(body, "kid");
    auto result = app.keys.verify(name, data_of(body), *sig, options_of(body),
                                  kid ? std::optional<std::string_view>(*kid) : std::nullopt);
    return Response::json(
        {{"valid", result.valid}, {"kid", result.valid ? nlohmann::json(result.kid) : nlohmann::json(nullptr)}});
}

Response jwt_sign(App& app, const Request& r, const std::string& name) {
    auto body = parse_body(r, {"claims", "ttl", "caller"});
    auto caller = caller_for(app, r, "sign", name);
    if (!body.contains("claims")) throw ApiError(400, "MISSING_FIELD", "field 'claims' is required");
    if (!body["claims"].is_object()) throw ApiError(400, "BAD_TYPE", "'claims' must be an object");
    core::jwt::SignRequest req;
    req.claims = body["claims"];
    req.ttl = optional_int(body, "ttl").value_or(3600);
    if (req.ttl <= 0) throw ApiError(400, "BAD_TTL", "ttl must be positive");
    req.caller = optional_string(body, "caller").value_or(caller.kid);
    double hsm_seconds = 0;
    std::string jwt = core::jwt::sign(app.keys, name, req, &hsm_seconds);
    app.metrics.observe("keywarden_hsm_operation_seconds", {{"op", "jwt_sign"}}, hsm_seconds);
    return Response::json({{"jwt", jwt}});
}

Response jwks(App& app, const Request&) {
    nlohmann::json set;
    std::int64_t lead = 300;
    {
        std::lock_guard lock(app.rotation_mutex);
        for (const auto& p : app.policies.policies()) {
            if (p.jwks_lead > 0) lead = std::min(lead, p.jwks_lead);
        }
    }
    set = core::jwt::jwks(app.keys);
    Response resp = Response::json(set);
    // Caches must refetch well within the lead time, or a verifier could miss
    // a version that starts signing.
    resp.headers["Cache-Control"] = "public, max-age=" + std::to_string(std::max<std::int64_t>(1, lead / 2));
    return resp;
}

}  // namespace kw::server
