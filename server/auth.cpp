// The credential check in front of every key, JWT and admin endpoint.
//
// A credential is a keywarden API token, so using one is verifying one: it
// is refused with the same distinctions, spends a use of a credit-limited
// token, is counted against the token's rate limit, and an unknown one counts
// towards the caller's brute-force allowance like an unknown token sent to
// /v1/tokens/verify. Refusals the token service never sees (no header, not
// "Bearer", not token-shaped) are audited here, sampled per caller so an
// anonymous flood cannot grow the audit log without bound.
#include "server/app.hpp"

namespace kw::server {
namespace {

[[noreturn]] void refuse_unverified(App& app, const Request& r, const char* code, const std::string& message) {
    audit_sampled(app, "auth:" + r.peer,
                  {core::audit::EventType::verify_failed,
                   "",
                   "",
                   "authorize",
                   code,
                   {{"caller", r.peer}, {"method", r.method}, {"path", r.target}}});
    throw ApiError(401, code, message);
}

}  // namespace

core::tokens::Verification authorize(App& app, const Request& r, const std::string& scope) {
    const std::string prefix = "Bearer ";
    if (r.authorization.empty())
        refuse_unverified(app, r, "AUTH_MISSING", "an Authorization: Bearer <token> header is required");
    if (r.authorization.rfind(prefix, 0) != 0)
        refuse_unverified(app, r, "AUTH_MALFORMED", "Authorization must be 'Bearer <token>'");
    refuse_slowed_caller(app, r);
    core::ratelimit::Decision rate;
    auto gate = [&](const core::tokens::Verification& v) {
        rate = app.token_limits.take(v.kid, 1);
        return rate.allowed;
    };
    auto v = app.tokens.verify(std::string_view(r.authorization).substr(prefix.size()), scope, gate);
    note_verification(app, v);
    using C = core::tokens::VerifyCode;
    switch (v.code) {
        case C::VALID: return v;
        case C::MALFORMED: refuse_unverified(app, r, "AUTH_MALFORMED", "the credential is not a keywarden token");
        case C::NOT_FOUND: count_unknown_token(app, r); throw ApiError(401, "AUTH_INVALID", "unknown credential");
        case C::EXPIRED: throw ApiError(401, "AUTH_EXPIRED", "the credential has expired");
        case C::REVOKED: throw ApiError(401, "AUTH_REVOKED", "the credential was revoked");
        case C::DISABLED: throw ApiError(401, "AUTH_DISABLED", "the credential is suspended");
        case C::USAGE_EXCEEDED: throw ApiError(401, "AUTH_EXHAUSTED", "the credential has no uses left");
        case C::INSUFFICIENT_SCOPE: throw ApiError(403, "AUTH_SCOPE", "the credential lacks scope '" + scope + "'");
        case C::RATE_LIMITED:
            app.metrics.inc("keywarden_rate_limit_denials_total", {{"scope", "token"}});
            audit_rate_limited(app, v.name, v.kid, "authorize", {{"retry_after_ms", rate.retry_after_ms}});
            throw rate_limited_error(
                rate, "the credential is over its rate limit; retry in " + std::to_string(rate.retry_after_ms) + " ms");
    }
    throw ApiError(401, "AUTH_INVALID", "unknown credential");
}

}  // namespace kw::server
