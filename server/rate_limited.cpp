// Rate-limit and brute-force refusals: how they are answered and audited.
//
// Denials are audited sampled (core/ratelimit/denial_sampler.hpp): the first
// denials of a subject per window in full, then one in N carrying how many
// were suppressed since the previous one. Metrics count every denial.
#include "server/app.hpp"

namespace kw::server {

void audit_sampled(App& app, const std::string& subject, const SampledEvent& e) {
    const auto d = app.denials.deny(subject);
    if (!d.audit) return;
    nlohmann::json details = e.details;
    details["suppressed"] = d.suppressed;
    try {
        app.keys.audit(e.type, e.key, e.kid, e.op, e.outcome, std::move(details));
    } catch (...) {
        app.denials.unreport(subject, d);  // still accounted for by the next audited one
        throw;
    }
}

void audit_rate_limited(App& app, const std::string& key, const std::string& kid, const std::string& op,
                        nlohmann::json details) {
    audit_sampled(app, key, {core::audit::EventType::rate_limited, key, kid, op, "RATE_LIMITED", std::move(details)});
}

void add_rate_headers(Response& resp, const core::ratelimit::Decision& d) {
    if (d.limit == 0) return;
    resp.headers["RateLimit-Limit"] = std::to_string(d.limit);
    resp.headers["RateLimit-Remaining"] = std::to_string(d.remaining);
    resp.headers["RateLimit-Reset"] = std::to_string((d.reset_ms + 999) / 1000);
    if (!d.allowed) resp.headers["Retry-After"] = std::to_string((d.retry_after_ms + 999) / 1000);
}

ApiError rate_limited_error(const core::ratelimit::Decision& d, const std::string& message) {
    ApiError e(429, "RATE_LIMITED", message);
    e.field("ratelimit", {{"limit", d.limit},
                          {"remaining", d.remaining},
                          {"reset_ms", d.reset_ms},
                          {"retry_after_ms", d.retry_after_ms}});
    Response headers;
    add_rate_headers(headers, d);
    for (auto& [k, v] : headers.headers) e.header(k, std::move(v));
    return e;
}

void refuse_slowed_caller(App& app, const Request& r) {
    const auto d = app.not_found_limits.peek("nf:" + r.peer);
    if (d.allowed) return;
    app.metrics.inc("keywarden_rate_limit_denials_total", {{"scope", "brute_force"}});
    audit_sampled(app, "caller:" + r.peer,
                  {core::audit::EventType::rate_limited,
                   "",
                   "",
                   "brute_force_guard",
                   "SLOW_DOWN",
                   {{"caller", r.peer}, {"path", r.target}}});
    throw ApiError(429, "SLOW_DOWN", "too many unknown tokens from this caller; slow down")
        .header("Retry-After", std::to_string((d.retry_after_ms + 999) / 1000))
        .field("retry_after_ms", d.retry_after_ms);
}

void count_unknown_token(App& app, const Request& r) {
    (void)app.not_found_limits.take("nf:" + r.peer, 1);
}

}  // namespace kw::server
