// Audit of rate-limit denials, sampled (core/ratelimit/denial_sampler.hpp):
// the first denials of a key per window in full, then one in N carrying how
// many were suppressed since the previous one. Metrics count every denial.
#include "server/app.hpp"

namespace kw::server {

void audit_rate_limited(App& app, const std::string& key, const std::string& kid, const std::string& op,
                        nlohmann::json details) {
    const auto d = app.denials.deny(key);
    if (!d.audit) return;
    details["suppressed"] = d.suppressed;
    try {
        app.keys.audit(core::audit::EventType::rate_limited, key, kid, op, "RATE_LIMITED", std::move(details));
    } catch (...) {
        app.denials.unreport(key, d);  // still accounted for by the next audited denial
        throw;
    }
}

}  // namespace kw::server
