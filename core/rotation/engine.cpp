#include "core/rotation/engine.hpp"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "core/crypto/public_key.hpp"
#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/lifecycle.hpp"
#include "token/attributes.hpp"
#include "token/object.hpp"

namespace kw::core::rotation {

void crash_point(const char* step) {
    const char* at = std::getenv("KW_CRASH_AT");
    if (at != nullptr && std::strcmp(at, step) == 0) std::raise(SIGKILL);
}

namespace {

bool is_token_key(const ManagedKey& key) {
    return key.type == KeyType::api_token || key.type == KeyType::provisioning;
}

constexpr std::int64_t kNoWait = 0;

}  // namespace

// ---------------------------------------------------------------- Params

Params Params::from_policy(const Policy* policy) {
    Params p;
    if (policy == nullptr) return p;
    p.strategy = policy->strategy;
    p.overlap = policy->overlap;
    if (!policy->phases.empty()) p.phases = policy->phases;
    p.rollback_window = policy->rollback_window;
    p.jwks_lead = policy->jwks_lead;
    p.keep_versions = policy->keep_versions;
    p.quiet_time = policy->quiet_time;
    return p;
}

std::string Params::to_json() const {
    nlohmann::json phases_json = nlohmann::json::array();
    for (const auto& ph : phases) phases_json.push_back({{"share", ph.share}, {"duration", ph.duration}});
    return nlohmann::json{{"strategy", rotation::to_string(strategy)},
                          {"overlap", overlap},
                          {"phases", phases_json},
                          {"rollback_window", rollback_window},
                          {"jwks_lead", jwks_lead},
                          {"keep_versions", keep_versions},
                          {"quiet_time", quiet_time}}
        .dump();
}

Params Params::from_json(const std::string& text) {
    Params p;
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return p;
    if (auto s = parse_strategy(j.value("strategy", std::string("OVERLAPPING")))) p.strategy = *s;
    p.overlap = j.value("overlap", p.overlap);
    if (j.contains("phases")) {
        p.phases.clear();
        for (const auto& ph : j["phases"])
            p.phases.push_back({ph.value("share", 100), ph.value("duration", std::int64_t{0})});
    }
    p.rollback_window = j.value("rollback_window", p.rollback_window);
    p.jwks_lead = j.value("jwks_lead", p.jwks_lead);
    p.keep_versions = j.value("keep_versions", p.keep_versions);
    p.quiet_time = j.value("quiet_time", p.quiet_time);
    return p;
}

// ---------------------------------------------------------------- Engine

Engine::Engine(KeyService& keys, tokens::TokenService& tokens, const PolicySet& policies, EngineOptions options)
    : keys_(keys), tokens_(tokens), policies_(policies), options_(std::move(options)) {
    if (options_.owner.empty()) options_.owner = "engine";
}

void Engine::save(const RotationRecord& r) {
    keys_.store().update_rotation(r);
}

std::optional<UnixTime> Engine::next_due(const ManagedKey& key) const {
    const Policy* policy = policies_.for_key(key);
    if (policy == nullptr || key.revoked_at) return std::nullopt;
    const KeyVersion* primary = key.primary();
    if (primary == nullptr || primary->state != VersionState::active) return std::nullopt;
    const std::int64_t period = policy->cryptoperiod > 0 ? policy->cryptoperiod : default_cryptoperiod(key.type);
    return primary->created_at + period;
}

StartResult Engine::rotate(std::string_view name, std::optional<Strategy> strategy) {
    ManagedKey key = keys_.get(name);
    if (key.revoked_at) throw Error(ErrorKind::not_permitted, "key '" + key.name + "' is revoked: it cannot rotate");
    const KeyVersion* primary = key.primary();
    if (primary == nullptr || primary->state != VersionState::active) {
        throw Error(ErrorKind::not_permitted, "key '" + key.name + "' has no active primary version to rotate from");
    }
    const std::string lease = "rotation:" + key.id;
    if (!keys_.store().try_lease(lease, options_.owner, keys_.clock().now(), options_.lease_ttl)) {
        throw Error(ErrorKind::store_locked, "another scheduler is rotating '" + key.name + "' (lease " + lease + ")");
    }
    StartResult out;
    try {
        const Policy* policy = policies_.for_key(key);
        Params p = Params::from_policy(policy);
        if (strategy) p.strategy = *strategy;
        RotationRecord r;
        r.key_id = key.id;
        r.key_name = key.name;
        r.strategy = std::string(rotation::to_string(p.strategy));
        r.policy = policy != nullptr ? policy->name : "";
        r.from_kid = primary->kid;
        r.to_kid = keys_.new_kid();  // recorded before anything is made in the token
        r.state = "planned";
        r.started_at = keys_.clock().now();
        r.params = p.to_json();
        r.id = keys_.store().create_rotation(r);
        crash_point("planned");
        out.record = advance(r, &out.new_token);
    } catch (...) {
        keys_.store().release_lease(lease, options_.owner);
        throw;
    }
    keys_.store().release_lease(lease, options_.owner);
    return out;
}

bool Engine::check_new_version(const ManagedKey& key, const RotationRecord& r, std::string& why) {
    // The check a careful operator would do before switching: the new
    // version signs, and the signature verifies with what was published.
    static const std::string probe = "keywarden blue-green check";
    try {
        SignResult s = keys_.sign_with_version(key.name, r.to_kid, as_bytes(probe));
        VerifyResult v = keys_.verify(key.name, as_bytes(probe), s.signature, {}, std::string_view(r.to_kid));
        if (!v.valid) {
            why = "test signature by " + r.to_kid + " does not verify with the published key";
            return false;
        }
    } catch (const std::exception& e) {
        why = std::string("check failed: ") + e.what();
        return false;
    }
    return true;
}

void Engine::fail(RotationRecord& r, const std::string& error) {
    // Only before promotion: the old version is still primary, so the new
    // one is simply withdrawn.
    try {
        ManagedKey key = keys_.get(r.key_name);
        if (const KeyVersion* v = key.version_by_kid(r.to_kid); v != nullptr && !v->primary) {
            if (v->state == VersionState::active || v->state == VersionState::suspended) {
                keys_.transition_version(key, v->kid, VersionState::deactivated, "rotation failed");
                key = keys_.get(r.key_name);
            }
            const VersionState now_state = key.version_by_kid(r.to_kid)->state;
            if (transition_allowed(now_state, VersionState::destroyed)) {
                keys_.transition_version(key, r.to_kid, VersionState::destroyed, "rotation failed");
                keys_.destroy_version_material(key, r.to_kid);
            } else if (now_state == VersionState::destroyed) {
                keys_.destroy_version_material(key, r.to_kid);  // a crash came between the two steps
            }
        }
        keys_.store().set_rollout(r.key_id, std::nullopt, 0);
    } catch (const std::exception&) {
        // Keep the original error; the withdrawal is retried by no one, but
        // the new version is not primary, so nothing signs with it.
    }
    r.state = "failed";
    r.outcome = "failed";
    r.error = error;
    r.finished_at = keys_.clock().now();
    save(r);
    keys_.audit(audit::EventType::key_rotated, r.key_name, r.to_kid, "rotate", "failed",
                {{"error", error}, {"rotation", r.id}});
}

void Engine::promote(const ManagedKey& key, RotationRecord& r) {
    const KeyVersion* v = key.version_by_kid(r.to_kid);
    if (v == nullptr) throw Error(ErrorKind::not_found, "new version " + r.to_kid + " vanished");
    if (v->state != VersionState::pre_active && v->state != VersionState::active) {
        throw Error(ErrorKind::not_permitted,
                    "new version " + r.to_kid + " is " + std::string(to_string(v->state)) + ": it cannot be promoted");
    }
    if (v->state == VersionState::pre_active) keys_.transition_version(key, r.to_kid, VersionState::active, "rotation");
    if (!v->primary) keys_.store().set_primary(key.id, r.to_kid);
    keys_.store().set_rollout(key.id, std::nullopt, 0);
    r.state = "promoted";
    r.promoted_at = keys_.clock().now();
    save(r);
    keys_.audit(audit::EventType::key_rotated, key.name, r.to_kid, "rotate", "ok",
                {{"from", r.from_kid}, {"to", r.to_kid}, {"strategy", r.strategy}, {"rotation", r.id}});
    crash_point("promoted");
}

void Engine::retire(const ManagedKey& key, RotationRecord& r, const Params& p) {
    if (const KeyVersion* old = key.version_by_kid(r.from_kid);
        old != nullptr && (old->state == VersionState::active || old->state == VersionState::suspended)) {
        keys_.transition_version(key, r.from_kid, VersionState::deactivated, "rotated out");
    }
    crash_point("retired");
    // Keep at most keep_versions versions that still exist; destroy the
    // oldest deactivated ones beyond that.
    ManagedKey now_key = keys_.get(key.name);
    // 'destroyed' is recorded before the material is erased: finish what a
    // crash in between left (wrapped: the blob says so; token residency:
    // versions destroyed during this rotation).
    for (const auto& v : now_key.versions) {
        if (v.state == VersionState::destroyed &&
            (!v.wrapped_blob.empty() || (v.residency == Residency::token && v.state_changed_at >= r.started_at))) {
            keys_.destroy_version_material(now_key, v.kid);
        }
    }
    std::vector<const KeyVersion*> alive;
    for (const auto& v : now_key.versions) {
        if (v.state != VersionState::destroyed) alive.push_back(&v);
    }
    std::sort(alive.begin(), alive.end(), [](auto* a, auto* b) { return a->version < b->version; });
    std::size_t excess = alive.size() > static_cast<std::size_t>(p.keep_versions) ? alive.size() - p.keep_versions : 0;
    for (const KeyVersion* v : alive) {
        if (excess == 0) break;
        if (v->primary || v->state != VersionState::deactivated) continue;
        keys_.transition_version(now_key, v->kid, VersionState::destroyed, "beyond keep_versions");
        keys_.destroy_version_material(now_key, v->kid);
        --excess;
    }
    r.state = "done";
    r.outcome = "success";
    r.error.clear();
    r.finished_at = keys_.clock().now();
    save(r);
    crash_point("done");
}

RotationRecord Engine::advance(RotationRecord r, std::optional<std::string>* new_token) {
    const Params p = Params::from_json(r.params);
    for (int guard = 0; guard < 32; ++guard) {
        if (r.state == "done" || r.state == "failed" || r.state == "rolled_back") return r;
        ManagedKey key = keys_.get(r.key_name);
        const UnixTime now = keys_.clock().now();
        try {
            if (r.state == "planned") {
                if (key.version_by_kid(r.to_kid) == nullptr) {
                    if (is_token_key(key)) {
                        if (new_token == nullptr) {
                            // Nobody is there to receive a successor token:
                            // an interrupted token rotation is withdrawn.
                            fail(r, "interrupted before the new token was handed out");
                            return r;
                        }
                        auto issued = tokens_.issue_version(key.name, r.to_kid);
                        *new_token = std::string(issued.token.view());
                    } else {
                        const KeyVersion* primary = key.primary();
                        // A crash after generating a token object but before
                        // recording it leaves an object with CKA_ID = to_kid:
                        // remove it, then generate afresh.
                        if (primary->residency == Residency::token) {
                            auto lease = keys_.token().session();
                            token::Template t;
                            t.add_bytes(CKA_ID, std::vector<std::uint8_t>(r.to_kid.begin(), r.to_kid.end()));
                            for (auto h : token::find_objects(lease.session(), t.span(), 8)) {
                                token::destroy_object(lease.session(), h);
                            }
                        }
                        int next = 1;
                        for (const auto& v : key.versions) next = std::max(next, v.version + 1);
                        KeyVersion v = keys_.make_version(key, next, primary->residency, r.to_kid);
                        crash_point("generated_unrecorded");
                        v.state = VersionState::pre_active;
                        v.primary = false;
                        keys_.store().add_version(key.id, v);
                    }
                }
                r.state = "generated";
                save(r);
                crash_point("generated");
                continue;
            }
            if (r.state == "generated") {
                if (is_token_key(key) && new_token == nullptr && key.version_by_kid(r.to_kid) &&
                    !key.version_by_kid(r.to_kid)->primary) {
                    // The successor token was made but never shown: withdraw it.
                    fail(r, "interrupted before the new token was handed out");
                    return r;
                }
                std::string why;
                if (p.strategy == Strategy::blue_green && !check_new_version(key, r, why)) {
                    fail(r, why);
                    return r;
                }
                r.state = "published";
                r.published_at = now;
                save(r);
                crash_point("published");
                continue;
            }
            if (r.state == "published") {
                if (is_token_key(key) && new_token == nullptr && !key.version_by_kid(r.to_kid)->primary) {
                    fail(r, "interrupted before the new token was handed out");
                    return r;
                }
                if (now < r.published_at.value_or(now) + p.jwks_lead) return r;  // JWKS lead time
                if (p.strategy == Strategy::gradual && !p.phases.empty() && p.phases.front().share < 100) {
                    if (key.version_by_kid(r.to_kid)->state == VersionState::pre_active) {
                        keys_.transition_version(key, r.to_kid, VersionState::active, "gradual rollout");
                    }
                    keys_.store().set_rollout(key.id, r.to_kid, p.phases.front().share);
                    r.state = "phasing";
                    r.phase = 0;
                    r.phase_started_at = now;
                    save(r);
                    crash_point("phasing");
                    continue;
                }
                promote(key, r);
                continue;
            }
            if (r.state == "phasing") {
                const auto& phase = p.phases.at(static_cast<std::size_t>(r.phase));
                if (now < r.phase_started_at.value_or(now) + phase.duration) return r;
                r.phase += 1;
                r.phase_started_at = now;
                const auto& next = p.phases.at(static_cast<std::size_t>(r.phase));
                if (next.share >= 100) {
                    promote(key, r);  // saves state "promoted" with the phase index
                } else {
                    keys_.store().set_rollout(key.id, r.to_kid, next.share);
                    save(r);
                }
                continue;
            }
            if (r.state == "promoted") {
                if (!key.version_by_kid(r.to_kid)->primary) {
                    // promote() sets the primary before it saves "promoted", so
                    // this is a rollback() killed after switching back.
                    const KeyVersion* from = key.version_by_kid(r.from_kid);
                    if (from != nullptr && from->primary) {
                        if (const KeyVersion* to = key.version_by_kid(r.to_kid);
                            to->state == VersionState::active || to->state == VersionState::suspended) {
                            keys_.transition_version(key, r.to_kid, VersionState::deactivated, "rolled back");
                        }
                        r.state = "rolled_back";
                        r.outcome = "rolled_back";
                        r.finished_at = now;
                        save(r);
                        return r;
                    }
                    promote(key, r);
                }
                std::int64_t wait = kNoWait;
                switch (p.strategy) {
                    case Strategy::immediate: wait = 0; break;
                    case Strategy::overlapping: wait = p.overlap; break;
                    case Strategy::blue_green: wait = p.rollback_window; break;
                    case Strategy::gradual: wait = p.phases.empty() ? 0 : p.phases.back().duration; break;
                }
                const UnixTime since =
                    r.strategy == "GRADUAL" ? r.phase_started_at.value_or(*r.promoted_at) : *r.promoted_at;
                if (now < since + wait) return r;
                if (p.quiet_time > 0 && p.strategy != Strategy::immediate) {
                    if (auto last = keys_.store().last_used(r.from_kid); last && now - *last < p.quiet_time) {
                        r.error = "old version " + r.from_kid + " still in use (last used " + format_time(*last) +
                                  "); retiring after " + std::to_string(p.quiet_time) + " s without use";
                        save(r);
                        return r;
                    }
                }
                retire(key, r, p);
                return r;
            }
            throw Error(ErrorKind::store_failure,
                        "rotation " + std::to_string(r.id) + " has unknown state '" + r.state + "'");
        } catch (const std::exception& e) {
            const auto* core_error = dynamic_cast<const Error*>(&e);
            if (core_error != nullptr &&
                (core_error->kind() == ErrorKind::audit_failure || core_error->kind() == ErrorKind::store_locked)) {
                throw;  // nothing was changed: the next tick retries
            }
            // Before promotion the old version still signs: withdraw the new
            // one. After it, keep the record open and retry later.
            if (r.state == "planned" || r.state == "generated" || r.state == "published" || r.state == "phasing") {
                fail(r, e.what());
                return r;
            }
            r.error = e.what();
            save(r);
            throw;
        }
    }
    return r;
}

std::vector<RotationRecord> Engine::run_due() {
    std::vector<RotationRecord> touched;
    const UnixTime now = keys_.clock().now();
    // 1. Open rotations: resume (after a crash too) or wait.
    for (const auto& r : keys_.store().open_rotations()) {
        const std::string lease = "rotation:" + r.key_id;
        if (!keys_.store().try_lease(lease, options_.owner, now, options_.lease_ttl)) continue;
        try {
            touched.push_back(advance(r));
        } catch (const std::exception&) {
            // recorded in r.error; retried on the next tick
        }
        keys_.store().release_lease(lease, options_.owner);
    }
    // 2. Keys whose cryptoperiod is over and that are not rotating already.
    for (const auto& key : keys_.store().list_keys()) {
        if (is_token_key(key)) continue;  // successor tokens must be handed to someone: rotate them by hand
        auto due = next_due(key);
        if (!due || *due > now) continue;
        if (keys_.store().open_rotation(key.id)) continue;
        try {
            touched.push_back(rotate(key.name).record);
        } catch (const Error& e) {
            if (e.kind() != ErrorKind::store_locked && e.kind() != ErrorKind::already_exists) throw;
        }
    }
    return touched;
}

RotationRecord Engine::rollback(std::string_view name) {
    ManagedKey key = keys_.get(name);
    auto open = keys_.store().open_rotation(key.id);
    if (!open) throw Error(ErrorKind::not_permitted, "'" + key.name + "' has no rotation in progress to roll back");
    RotationRecord r = *open;
    const Params p = Params::from_json(r.params);
    const UnixTime now = keys_.clock().now();
    if (r.state == "promoted" && p.strategy == Strategy::blue_green &&
        now > r.promoted_at.value_or(now) + p.rollback_window) {
        throw Error(ErrorKind::not_permitted, "the rollback window of '" + key.name + "' has closed");
    }
    const KeyVersion* old = key.version_by_kid(r.from_kid);
    if (old == nullptr || old->state != VersionState::active) {
        throw Error(ErrorKind::not_permitted, "the old version of '" + key.name + "' is no longer active");
    }
    if (!old->primary) keys_.store().set_primary(key.id, r.from_kid);
    keys_.store().set_rollout(key.id, std::nullopt, 0);
    key = keys_.get(name);
    if (const KeyVersion* v = key.version_by_kid(r.to_kid)) {
        if (v->state == VersionState::active || v->state == VersionState::suspended ||
            v->state == VersionState::pre_active) {
            keys_.transition_version(key, r.to_kid, VersionState::deactivated, "rolled back");
        }
    }
    r.state = "rolled_back";
    r.outcome = "rolled_back";
    r.finished_at = now;
    save(r);
    keys_.audit(audit::EventType::key_rotated, key.name, r.from_kid, "rollback", "ok",
                {{"from", r.to_kid}, {"to", r.from_kid}, {"rotation", r.id}});
    return r;
}

std::optional<RotationRecord> Engine::status(std::string_view name) {
    ManagedKey key = keys_.get(name);
    if (auto open = keys_.store().open_rotation(key.id)) return open;
    auto h = keys_.store().rotation_history(key.name, 1);
    if (h.empty()) return std::nullopt;
    return h.front();
}

std::vector<RotationRecord> Engine::history(std::string_view name, std::size_t limit) {
    return keys_.store().rotation_history(name, limit);
}

std::vector<StrategyStats> Engine::stats() {
    std::map<std::string, std::vector<const RotationRecord*>> by;
    auto all = keys_.store().rotation_history("", 1000000);
    for (const auto& r : all) {
        by[r.strategy].push_back(&r);
        by["ALL"].push_back(&r);
    }
    std::vector<StrategyStats> out;
    for (auto& [strategy, rs] : by) {
        StrategyStats s;
        s.strategy = strategy;
        std::vector<double> durations;
        for (const auto* r : rs) {
            ++s.total;
            if (!r->finished_at) {
                ++s.in_progress;
                continue;
            }
            if (r->outcome == "success") ++s.succeeded;
            if (r->outcome == "failed") ++s.failed;
            if (r->outcome == "rolled_back") ++s.rolled_back;
            durations.push_back(static_cast<double>(*r->finished_at - r->started_at));
        }
        const int finished = s.succeeded + s.failed + s.rolled_back;
        s.success_rate = finished > 0 ? static_cast<double>(s.succeeded) / finished : 0.0;
        if (!durations.empty()) {
            double sum = 0;
            for (double d : durations) sum += d;
            s.mean_seconds = sum / static_cast<double>(durations.size());
            std::sort(durations.begin(), durations.end());
            s.p95_seconds = durations[std::min(durations.size() - 1,
                                               static_cast<std::size_t>(0.95 * static_cast<double>(durations.size())))];
        }
        out.push_back(s);
    }
    std::stable_partition(out.begin(), out.end(), [](const auto& s) { return s.strategy != "ALL"; });
    return out;
}

}  // namespace kw::core::rotation
