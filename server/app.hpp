#pragma once
// Everything a request handler may use, owned by main() and passed by
// reference (no globals). Services below are thread-safe; the rotation
// engine and the policy set are guarded by `rotation_mutex`.
#include <atomic>
#include <memory>
#include <mutex>

#include "core/alerts/alerts.hpp"
#include "core/alerts/spike.hpp"
#include "core/config.hpp"
#include "core/key_service.hpp"
#include "core/metrics/registry.hpp"
#include "core/ratelimit/denial_sampler.hpp"
#include "core/ratelimit/gcra.hpp"
#include "core/rotation/engine.hpp"
#include "core/tokens/token_service.hpp"
#include "server/request.hpp"
#include "server/rotation_counter.hpp"

namespace kw::server {

// audit_failure alerts, at most one a minute (server/audit_alarm.cpp).
struct AuditAlarm {
    std::atomic<std::int64_t> last_alert{-60};  // unix seconds
    std::atomic<std::int64_t> since_alert{0};   // refusals not yet reported by an alert
};

struct App {
    const core::Config& config;
    token::Token& token;
    core::Store& store;
    core::audit::Log& audit;
    core::KeyService& keys;
    core::tokens::TokenService& tokens;
    core::tokens::UsageAccumulator& usage;  // unlimited tokens' use counts, not yet flushed
    core::rotation::Engine& engine;
    core::rotation::PolicySet& policies;
    std::mutex& rotation_mutex;
    core::ratelimit::Gcra& token_limits;  // per API token (kid)
    core::ratelimit::Gcra& key_limits;    // per managed key name
    // Brute-force guard: NOT_FOUND answers per caller address; a caller that
    // exhausts it is refused (429 SLOW_DOWN) until its allowance refills.
    core::ratelimit::Gcra& not_found_limits;
    // Which refusals of a flooding subject are audited: rate-limit denials
    // (per key), SLOW_DOWN and header-level auth refusals (per caller).
    core::ratelimit::DenialSampler& denials;
    core::metrics::Registry& metrics;
    std::atomic<bool>& draining;
    core::alerts::Dispatcher& alerts;
    core::alerts::SpikeDetector& spikes;  // verify_failed_spike
    RotationCounter& rotations;           // keywarden_rotations_total
    AuditAlarm& audit_failures;
};

/// Routes one request; never throws (errors become JSON error responses).
Response handle(App& app, const Request& request);

// Handler groups (one file each).
Response tokens_verify(App& app, const Request& r);
Response tokens_verify_batch(App& app, const Request& r);
Response key_sign(App& app, const Request& r, const std::string& name);
Response key_verify(App& app, const Request& r, const std::string& name);
Response key_hmac(App& app, const Request& r, const std::string& name);
Response jwt_sign(App& app, const Request& r, const std::string& name);
Response jwks(App& app, const Request& r);
Response admin(App& app, const Request& r, const std::string& path);
/// GET, PUT and DELETE /v1/admin/limits, for a caller already authorised
/// with the admin scope (`admin_kid`: its credential).
Response admin_limits(App& app, const Request& r, const std::string& admin_kid);
/// Applies the limits kept in the store (set through the admin API before a
/// restart) over the configuration's defaults.
void apply_stored_limits(core::Store& store, core::ratelimit::Gcra& token_limits, core::ratelimit::Gcra& key_limits);
Response metrics(App& app, const Request& r);
Response healthz(App& app, const Request& r);
Response readyz(App& app, const Request& r);

/// An audit event written only when the denial sampler picks it.
struct SampledEvent {
    core::audit::EventType type;
    std::string key, kid, op, outcome;
    nlohmann::json details;
};
/// Records one refusal of `subject` with app.denials and writes `e` if the
/// sampler picks it, with "suppressed" (the refusals of `subject` not
/// audited since) added to its details. Throws like KeyService::audit; a
/// failed write is counted again by the next audited refusal.
void audit_sampled(App& app, const std::string& subject, const SampledEvent& e);
/// Audits a rate-limit denial of `key` if the sampler picks it (adds
/// "suppressed" to `details`). Throws like KeyService::audit.
void audit_rate_limited(App& app, const std::string& key, const std::string& kid, const std::string& op,
                        nlohmann::json details);

/// Counts a verification answer by code and raises verify_failed_spike,
/// credits_low and credits_exhausted (server/verification_watch.cpp).
void note_verification(App& app, const core::tokens::Verification& v, std::int64_t cost = 1);

/// Counts an operation refused because its audit event could not be
/// written, and raises audit_failure (at most once a minute).
void note_audit_failure(App& app, const std::string& why);

/// Sets RateLimit-Limit/-Remaining/-Reset (and Retry-After for a denial).
void add_rate_headers(Response& resp, const core::ratelimit::Decision& d);
/// 429 RATE_LIMITED with a "ratelimit" object and the headers above.
[[nodiscard]] ApiError rate_limited_error(const core::ratelimit::Decision& d, const std::string& message);

/// Brute-force guard: throws 429 SLOW_DOWN (with Retry-After; audited,
/// sampled) while the caller's allowance of unknown tokens is spent.
void refuse_slowed_caller(App& app, const Request& r);
/// Counts one unknown token (NOT_FOUND) against the caller's allowance.
void count_unknown_token(App& app, const Request& r);

/// Checks the Authorization bearer token for `scope`, spending one unit of
/// its rate limit; throws ApiError with AUTH_MISSING / AUTH_MALFORMED /
/// AUTH_INVALID / AUTH_EXPIRED / AUTH_REVOKED / AUTH_DISABLED /
/// AUTH_EXHAUSTED / AUTH_SCOPE, 429 RATE_LIMITED or 429 SLOW_DOWN. Every
/// refusal is audited: by the token service once the string is token-shaped,
/// here (sampled per caller) before that.
core::tokens::Verification authorize(App& app, const Request& r, const std::string& scope);

}  // namespace kw::server
