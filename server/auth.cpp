#include "server/app.hpp"

namespace kw::server {

core::tokens::Verification authorize(App& app, const Request& r, const std::string& scope) {
    const std::string prefix = "Bearer ";
    if (r.authorization.empty())
        throw ApiError(401, "AUTH_MISSING", "an Authorization: Bearer <token> header is required");
    if (r.authorization.rfind(prefix, 0) != 0)
        throw ApiError(401, "AUTH_MALFORMED", "Authorization must be 'Bearer <token>'");
    auto v = app.tokens.verify(std::string_view(r.authorization).substr(prefix.size()), scope);
    using C = core::tokens::VerifyCode;
    switch (v.code) {
        case C::VALID: return v;
        case C::MALFORMED: throw ApiError(401, "AUTH_MALFORMED", "the credential is not a keywarden token");
        case C::NOT_FOUND: throw ApiError(401, "AUTH_INVALID", "unknown credential");
        case C::EXPIRED: throw ApiError(401, "AUTH_EXPIRED", "the credential has expired");
        case C::REVOKED: throw ApiError(401, "AUTH_REVOKED", "the credential was revoked");
        case C::DISABLED: throw ApiError(401, "AUTH_DISABLED", "the credential is suspended");
        case C::USAGE_EXCEEDED: throw ApiError(401, "AUTH_EXHAUSTED", "the credential has no uses left");
        case C::INSUFFICIENT_SCOPE: throw ApiError(403, "AUTH_SCOPE", "the credential lacks scope '" + scope + "'");
        case C::RATE_LIMITED: throw ApiError(429, "RATE_LIMITED", "too many requests");
    }
    throw ApiError(401, "AUTH_INVALID", "unknown credential");
}

}  // namespace kw::server
