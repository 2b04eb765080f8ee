#include "core/tokens/token_service.hpp"

#include <fnmatch.h>

#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/tokens/format.hpp"
#include "token/sign.hpp"

namespace kw::core::tokens {

std::string_view to_string(VerifyCode c) {
    switch (c) {
        case VerifyCode::VALID: return "VALID";
        case VerifyCode::NOT_FOUND: return "NOT_FOUND";
        case VerifyCode::EXPIRED: return "EXPIRED";
        case VerifyCode::REVOKED: return "REVOKED";
        case VerifyCode::DISABLED: return "DISABLED";
        case VerifyCode::USAGE_EXCEEDED: return "USAGE_EXCEEDED";
        case VerifyCode::INSUFFICIENT_SCOPE: return "INSUFFICIENT_SCOPE";
        case VerifyCode::MALFORMED: return "MALFORMED";
        case VerifyCode::RATE_LIMITED: return "RATE_LIMITED";
    }
    return "UNKNOWN";
}

bool scope_allows(const std::vector<std::string>& granted, std::string_view required) {
    const std::string req(required);
    for (const auto& g : granted) {
        if (g == "admin" || g == req) return true;
        if (g == "read_write" && req == "read_only") return true;
        if (g.find_first_of("*?[") != std::string::npos && fnmatch(g.c_str(), req.c_str(), 0) == 0) return true;
    }
    return false;
}

TokenService::TokenService(KeyService& keys, UsageAccumulator* usage) : keys_(keys), usage_(usage) {
    for (const auto& [version, handle] : keys_.roots().peppers) {
        pepper_copies_.emplace(version, std::make_unique<token::SessionCopy>(handle));
    }
}

std::vector<std::uint8_t> TokenService::digest(int pepper_version, std::string_view token) {
    auto it = pepper_copies_.find(pepper_version);
    if (it == pepper_copies_.end()) {
        throw Error(ErrorKind::not_initialized,
                    "token pepper v" + std::to_string(pepper_version) + " is not in the token");
    }
    auto lease = keys_.token().session();
    return token::sign(lease.session(), it->second->get(keys_.token(), lease.session()),
                       token::SignMechanism::hmac_sha256, as_bytes(token));
}

IssuedToken TokenService::make_token(ManagedKey& key, int version, const std::string& prefix,
                                     std::optional<std::int64_t> max_uses, TokenRecord& record,
                                     std::optional<std::string> kid) {
    token::SecretBytes random(keys_.random(kRandomBytes));
    token::SecretString text(format_token(prefix, random.view()));
    KeyVersion v;
    v.version = version;
    v.kid = kid ? *kid : keys_.new_kid();
    v.state = VersionState::active;
    v.primary = true;
    v.residency = Residency::wrapped;  // nothing to wrap: the token lives only as a digest
    v.created_at = keys_.clock().now();
    v.state_changed_at = v.created_at;
    key.versions.push_back(v);

    record.kid = v.kid;
    record.pepper_version = keys_.roots().current_pepper();
    record.digest = digest(record.pepper_version, text.view());
    record.prefix = prefix;
    record.display = display_form(text.view());
    record.max_uses = max_uses;
    return IssuedToken{key, std::move(text), record.display};
}

namespace {

// A new token's credits schedule: the first refill is the schedule's first
// after issue; an "every" cadence is phased from issue.
void set_refill(TokenRecord& record, const RefillSchedule& refill, std::optional<std::int64_t> amount,
                UnixTime issued) {
    record.refill = refill;
    record.refill_amount = amount;
    record.period_start = issued;
    record.next_refill_at = refill.next_after(issued, issued);
}

}  // namespace

IssuedToken TokenService::issue(const IssueRequest& request) {
    IssueRequest r = request;
    if (r.type != KeyType::api_token && r.type != KeyType::provisioning) {
        throw Error(ErrorKind::invalid_argument, "tokens are api_token or provisioning keys");
    }
    if (!valid_prefix(r.prefix)) {
        throw Error(ErrorKind::invalid_argument, "token prefix '" + r.prefix + "' must be 1-32 of a-z, 0-9 and _");
    }
    if (r.type == KeyType::provisioning) {
        if (!r.max_uses) r.max_uses = 1;
        if (!r.expires_in) r.expires_in = 3600;
    }
    if (r.max_uses && *r.max_uses <= 0) throw Error(ErrorKind::invalid_argument, "--max-uses must be at least 1");
    if (r.refill && !r.max_uses) {
        throw Error(ErrorKind::invalid_argument, "a refill needs --max-uses (the first allowance)");
    }
    if (r.refill_amount && (!r.refill || *r.refill_amount <= 0)) {
        throw Error(ErrorKind::invalid_argument, "a refill amount needs a refill schedule and must be at least 1");
    }
    if (r.expires_in && *r.expires_in <= 0) throw Error(ErrorKind::invalid_argument, "expiry must be in the future");
    if (r.name.empty()) throw Error(ErrorKind::invalid_argument, "a token needs a name");
    if (keys_.store().find_key(r.name))
        throw Error(ErrorKind::already_exists, "a key named '" + r.name + "' already exists");

    ManagedKey key;
    key.id = keys_.new_uuid();
    key.name = r.name;
    key.type = r.type;
    key.scopes = r.scopes;
    key.owner = r.owner;
    key.labels = r.labels;
    key.labels["prefix"] = r.prefix;
    key.created_at = keys_.clock().now();
    if (r.expires_in) key.expires_at = key.created_at + *r.expires_in;
    TokenRecord record;
    IssuedToken issued = make_token(key, 1, r.prefix, r.max_uses, record);
    if (r.refill) set_refill(record, *r.refill, r.refill_amount, key.created_at);
    // Audit first (fail closed): no token exists that the log does not know.
    keys_.audit(audit::EventType::token_issued, key.name, record.kid, "issue", "ok",
                {{"type", core::to_string(key.type)},
                 {"display", record.display},
                 {"scopes", key.scopes},
                 {"max_uses", r.max_uses ? nlohmann::json(*r.max_uses) : nlohmann::json(nullptr)}});
    keys_.store().create_token_key(key, record);
    issued.key = key;
    return issued;
}

IssuedToken TokenService::issue_version(std::string_view name, std::optional<std::string> kid) {
    ManagedKey key = keys_.get(name);
    if (key.type != KeyType::api_token && key.type != KeyType::provisioning) {
        throw Error(ErrorKind::invalid_argument, "'" + key.name + "' is not a token key");
    }
    int next = 1;
    std::optional<std::int64_t> max_uses;
    std::optional<RefillSchedule> refill;
    std::optional<std::int64_t> refill_amount;
    for (const auto& v : key.versions) {
        next = std::max(next, v.version + 1);
        if (v.primary) {
            if (auto rec = keys_.store().token_record(v.kid)) {
                max_uses = rec->max_uses;
                refill = rec->refill;
                refill_amount = rec->refill_amount;
            }
        }
    }
    const std::string prefix = key.labels.count("prefix") ? key.labels.at("prefix") : "kw_live";
    ManagedKey scratch = key;
    scratch.versions.clear();
    TokenRecord record;
    IssuedToken issued = make_token(scratch, next, prefix, max_uses, record, std::move(kid));
    if (refill) set_refill(record, *refill, refill_amount, keys_.clock().now());
    KeyVersion v = scratch.versions.front();
    v.primary = false;  // rotation decides when it becomes primary
    keys_.audit(audit::EventType::token_issued, key.name, record.kid, "issue_version", "ok",
                {{"display", record.display}});
    keys_.store().add_token_version(key.id, v, record);
    issued.key = keys_.get(name);
    return issued;
}

Verification TokenService::finish(Verification v, const ManagedKey& key) {
    v.key_id = key.id;
    v.name = key.name;
    v.scopes = key.scopes;
    v.expires_at = key.expires_at;
    // A gate's refusal is audited by the gate's owner, which samples them
    // (keywardend: server/rate_limited.cpp), so a flood cannot swamp the log.
    if (v.code == VerifyCode::RATE_LIMITED) return v;
    const bool ok = v.code == VerifyCode::VALID;
    // A found token is named by its kid (the version row), which reveals nothing.
    keys_.audit(ok ? audit::EventType::key_used : audit::EventType::verify_failed, key.name, v.kid, "verify_token",
                std::string(to_string(v.code)));
    return v;
}

bool TokenService::count_use(const TokenRecord& rec, UnixTime now, std::int64_t cost) {
    // max_uses is fixed at issue, so a token found without it stays unlimited:
    // nothing to overspend, its count can wait for the next batch.
    if (usage_ != nullptr && !rec.max_uses) {
        usage_->add(rec.kid, now);
        return true;
    }
    std::optional<UnixTime> next_refill;
    if (rec.refill && rec.refill_due(now)) next_refill = rec.refill->next_after(now, rec.period_start.value_or(now));
    return keys_.store().consume_token_use(rec.kid, now, cost, next_refill);
}

Verification TokenService::verify(std::string_view token, std::optional<std::string_view> required_scope,
                                  const std::function<bool(const Verification&)>& gate, std::int64_t cost) {
    Verification out;
    if (!parse_token(token)) {
        out.code = VerifyCode::MALFORMED;
        return out;
    }
    const auto& peppers = keys_.roots().peppers;
    std::shared_ptr<const Store::TokenMatch> match;
    int found_pepper = 0;
    std::vector<std::uint8_t> current_digest;
    // Newest pepper first; older ones only for tokens not yet re-digested.
    for (auto it = peppers.rbegin(); it != peppers.rend() && !match; ++it) {
        auto d = digest(it->first, token);
        if (it == peppers.rbegin()) current_digest = d;
        match = keys_.store().find_token(d);
        if (match) found_pepper = it->first;
    }
    if (!match) {
        // An unknown token has no kid to name it by: the audit record carries
        // a pseudonym (HMAC under the audit key) of its digest, so repeated
        // guesses can be correlated without storing anything a thief could use.
        out.code = VerifyCode::NOT_FOUND;
        const std::string pseudonym = keys_.audit_log().keys().pseudonym(to_hex(current_digest));
        keys_.audit(audit::EventType::verify_failed, "", "", "verify_token", "NOT_FOUND", {{"token", pseudonym}});
        return out;
    }
    const ManagedKey& key = match->key;
    const TokenRecord& rec = match->token;
    out.kid = rec.kid;
    const KeyVersion* v = key.version_by_kid(rec.kid);
    const UnixTime now = keys_.clock().now();
    out.remaining_uses = rec.remaining(now);
    out.next_refill = rec.next_refill(now);

    if (key.revoked_at || v == nullptr || v->state == VersionState::deactivated ||
        v->state == VersionState::compromised || v->state == VersionState::destroyed) {
        out.code = VerifyCode::REVOKED;
    } else if (v->state == VersionState::suspended || v->state == VersionState::pre_active) {
        out.code = VerifyCode::DISABLED;
    } else if (key.expired(now)) {
        out.code = VerifyCode::EXPIRED;
    } else if (required_scope && !scope_allows(key.scopes, *required_scope)) {
        out.code = VerifyCode::INSUFFICIENT_SCOPE;
    } else if (gate && !gate([&] {
                   Verification probe = out;
                   probe.key_id = key.id;
                   probe.name = key.name;
                   return probe;
               }())) {
        out.code = VerifyCode::RATE_LIMITED;
    } else if (!count_use(rec, now, cost)) {
        out.code = VerifyCode::USAGE_EXCEEDED;
    } else {
        out.code = VerifyCode::VALID;
        if (out.remaining_uses) out.remaining_uses = std::max<std::int64_t>(0, *out.remaining_uses - cost);
        if (found_pepper != keys_.roots().current_pepper()) {
            keys_.store().update_token_digest(rec.kid, current_digest, keys_.roots().current_pepper());
        }
    }
    return finish(out, key);
}

std::vector<TokenService::Listed> TokenService::list() {
    std::vector<Listed> out;
    for (auto& key : keys_.list()) {
        if (key.type != KeyType::api_token && key.type != KeyType::provisioning) continue;
        Listed l{key, {}};
        for (const auto& v : key.versions) {
            if (auto rec = keys_.store().token_record(v.kid)) l.tokens.push_back(*rec);
        }
        out.push_back(std::move(l));
    }
    return out;
}

}  // namespace kw::core::tokens
