// /v1/admin/limits: rate limits set at run time, kept in the store so they
// survive a restart, and audited as policy changes.
#include <algorithm>

#include "server/api_error.hpp"
#include "server/app.hpp"

namespace kw::server {
namespace {

nlohmann::json limit_json(const core::ratelimit::Limit& l) {
    return {{"limit", l.limit}, {"period_ms", l.period_ms}, {"burst", l.burst}};
}

// Which limit a request body names: a key's, a token's, or a default
// ("default": "key" or "token"; with no subject at all, the token default).
struct Subject {
    std::string scope;  // as stored: "key", "token", "key_default", "token_default"
    std::string name;   // key name or token kid; "" for the defaults
};

Subject subject_of(App& app, const nlohmann::json& body) {
    auto key = optional_string(body, "key");
    auto kid = optional_string(body, "token_kid");
    auto which_default = optional_string(body, "default");
    if ((key ? 1 : 0) + (kid ? 1 : 0) + (which_default ? 1 : 0) > 1) {
        throw ApiError(400, "BAD_REQUEST", "give one of key, token_kid or default");
    }
    if (which_default) {
        if (*which_default == "key") return {"key_default", ""};
        if (*which_default == "token") return {"token_default", ""};
        throw ApiError(400, "BAD_REQUEST", "default must be \"key\" or \"token\"");
    }
    if (key) {
        // A typo must not become a limit on nothing.
        if (!app.store.find_key(*key)) throw ApiError(404, "KEY_NOT_FOUND", "no key named '" + *key + "'");
        return {"key", *key};
    }
    if (kid) {
        if (!app.store.token_record(*kid))
            throw ApiError(404, "TOKEN_NOT_FOUND", "no API token with kid '" + *kid + "'");
        return {"token", *kid};
    }
    return {"token_default", ""};
}

core::ratelimit::Gcra& limiter_for(App& app, const Subject& s) {
    return s.scope == "key" || s.scope == "key_default" ? app.key_limits : app.token_limits;
}

// One stored or newly set limit into the limiters.
void apply_limit(const std::string& scope, const std::string& subject, const core::ratelimit::Limit& limit,
                 core::ratelimit::Gcra& token_limits, core::ratelimit::Gcra& key_limits) {
    if (scope == "token_default") {
        token_limits.set_default(limit);
    } else if (scope == "key_default") {
        key_limits.set_default(limit);
    } else if (scope == "token") {
        token_limits.set_limit(subject, limit);
    } else if (scope == "key") {
        key_limits.set_limit(subject, limit);
    }
}

void audit_change(App& app, const Subject& s, const std::string& op, const std::string& admin_kid,
                  nlohmann::json details) {
    details["scope"] = s.scope;
    details["by"] = admin_kid;
    app.keys.audit(core::audit::EventType::policy_changed, s.scope == "key" ? s.name : "",
                   s.scope == "token" ? s.name : "", op, "ok", std::move(details));
}

Response list(App& app) {
    nlohmann::json tokens = nlohmann::json::array();
    nlohmann::json keys = nlohmann::json::array();
    nlohmann::json token_default = limit_json(app.token_limits.default_limit());
    nlohmann::json key_default = limit_json(app.key_limits.default_limit());
    token_default["source"] = "config";
    key_default["source"] = "config";
    for (const auto& l : app.store.limits()) {
        const nlohmann::json who = {{"updated_at", l.updated_at}, {"updated_by", l.updated_by}};
        if (l.scope == "token_default" || l.scope == "key_default") {
            // The value in force is the limiter's (above); say where it came from.
            auto& d = l.scope == "token_default" ? token_default : key_default;
            d.update(who);
            d["source"] = "admin";
            continue;
        }
        nlohmann::json j = limit_json({l.limit, l.period_ms, l.burst});
        j.update(who);
        j[l.scope == "key" ? "key" : "token_kid"] = l.subject;
        (l.scope == "key" ? keys : tokens).push_back(std::move(j));
    }
    return Response::json(
        {{"token_default", token_default}, {"key_default", key_default}, {"tokens", tokens}, {"keys", keys}});
}

Response put(App& app, const Request& r, const std::string& admin_kid) {
    auto body = parse_body(r, {"key", "token_kid", "default", "limit", "period_ms", "burst"});
    core::ratelimit::Limit l;
    const auto limit = optional_int(body, "limit");
    if (!limit) throw ApiError(400, "MISSING_FIELD", "field 'limit' is required");
    l.limit = *limit;
    l.period_ms = optional_int(body, "period_ms").value_or(l.period_ms);
    l.burst = optional_int(body, "burst").value_or(l.limit);
    if (l.limit < 1 || l.period_ms < 1 || l.burst < 1)
        throw ApiError(400, "BAD_LIMIT", "limit, period_ms and burst must be >= 1");
    const Subject s = subject_of(app, body);
    // Audit first (fail closed), then keep it, then apply it.
    audit_change(app, s, "set_limit", admin_kid, limit_json(l));
    app.store.put_limit({s.scope, s.name, l.limit, l.period_ms, l.burst, app.keys.clock().now(), admin_kid});
    apply_limit(s.scope, s.name, l, app.token_limits, app.key_limits);
    return Response::json(limit_json(l));
}

Response remove(App& app, const Request& r, const std::string& admin_kid) {
    auto body = parse_body(r, {"key", "token_kid", "default"});
    const Subject s = subject_of(app, body);
    const auto stored = app.store.limits();
    const bool exists = std::any_of(stored.begin(), stored.end(),
                                    [&](const auto& l) { return l.scope == s.scope && l.subject == s.name; });
    if (!exists)
        throw ApiError(404, "LIMIT_NOT_FOUND", "no limit was set for this " + s.scope + " through the admin API");
    // Audited before it happens (fail closed); only what exists is removed.
    audit_change(app, s, "remove_limit", admin_kid, nlohmann::json::object());
    (void)app.store.remove_limit(s.scope, s.name);
    auto& limiter = limiter_for(app, s);
    if (s.scope == "token_default" || s.scope == "key_default") {  // back to the configuration's
        limiter.set_default(
            s.scope == "token_default"
                ? core::ratelimit::Limit{app.config.token_limit, app.config.token_period_ms, app.config.token_burst}
                : core::ratelimit::Limit{app.config.key_limit, app.config.key_period_ms, app.config.key_burst});
        return Response::json(limit_json(limiter.default_limit()));
    }
    limiter.remove_limit(s.name);
    return Response::json(limit_json(limiter.limit_for(s.name)));  // what now applies
}

}  // namespace

Response admin_limits(App& app, const Request& r, const std::string& admin_kid) {
    if (r.method == "GET") return list(app);
    if (r.method == "PUT") return put(app, r, admin_kid);
    if (r.method == "DELETE") return remove(app, r, admin_kid);
    throw ApiError(405, "METHOD_NOT_ALLOWED", "use GET, PUT or DELETE on /v1/admin/limits");
}

void apply_stored_limits(core::Store& store, core::ratelimit::Gcra& token_limits, core::ratelimit::Gcra& key_limits) {
    for (const auto& l : store.limits()) {
        apply_limit(l.scope, l.subject, {l.limit, l.period_ms, l.burst}, token_limits, key_limits);
    }
}

}  // namespace kw::server
