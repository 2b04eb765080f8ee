// /v1/admin/...: key, token, rotation, policy, audit and limit administration.
// Every call needs a keywarden API token with scope "admin".
#include <charconv>

#include "core/audit/export.hpp"
#include "core/audit/verify.hpp"
#include "core/crypto/public_key.hpp"
#include "core/error.hpp"
#include "server/app.hpp"

namespace kw::server {
namespace {

nlohmann::json key_json(const core::ManagedKey& k) {
    nlohmann::json versions = nlohmann::json::array();
    for (const auto& v : k.versions) {
        versions.push_back({{"version", v.version},
                            {"kid", v.kid},
                            {"state", core::to_string(v.state)},
                            {"primary", v.primary},
                            {"residency", core::to_string(v.residency)},
                            {"created_at", core::format_time(v.created_at)}});
    }
    return {{"id", k.id},
            {"name", k.name},
            {"type", core::to_string(k.type)},
            {"scopes", k.scopes},
            {"owner", k.owner},
            {"labels", k.labels},
            {"created_at", core::format_time(k.created_at)},
            {"expires_at", k.expires_at ? nlohmann::json(core::format_time(*k.expires_at)) : nlohmann::json(nullptr)},
            {"revoked_at", k.revoked_at ? nlohmann::json(core::format_time(*k.revoked_at)) : nlohmann::json(nullptr)},
            {"versions", versions}};
}

nlohmann::json rotation_json(const core::RotationRecord& r) {
    return {
        {"id", r.id},
        {"key", r.key_name},
        {"strategy", r.strategy},
        {"from_kid", r.from_kid},
        {"to_kid", r.to_kid},
        {"state", r.state},
        {"outcome", r.outcome},
        {"error", r.error},
        {"started_at", core::format_time(r.started_at)},
        {"finished_at", r.finished_at ? nlohmann::json(core::format_time(*r.finished_at)) : nlohmann::json(nullptr)}};
}

std::vector<std::string> strings(const nlohmann::json& j, const char* field) {
    if (!j.contains(field)) return {};
    if (!j[field].is_array())
        throw ApiError(400, "BAD_TYPE", std::string("'") + field + "' must be an array of strings");
    std::vector<std::string> out;
    for (const auto& s : j[field]) {
        if (!s.is_string()) throw ApiError(400, "BAD_TYPE", std::string("'") + field + "' must be an array of strings");
        out.push_back(s.get<std::string>());
    }
    return out;
}

Response create_key(App& app, const Request& r) {
    auto body =
        parse_body(r, {"name", "type", "size", "curve", "alg", "scopes", "owner", "labels", "expires_in", "residency"});
    core::GenerateRequest g;
    g.name = require_string(body, "name");
    auto type = core::parse_key_type(require_string(body, "type"));
    if (!type) throw ApiError(400, "BAD_TYPE", "unknown key type");
    g.type = *type;
    if (auto size = optional_int(body, "size")) {
        if (g.type == core::KeyType::hmac) {
            g.hmac_bits = static_cast<unsigned>(*size);
        } else {
            g.rsa_bits = static_cast<unsigned>(*size);
        }
    }
    if (auto c = optional_string(body, "curve")) {
        g.curve = core::parse_curve(*c);
        if (!g.curve) throw ApiError(400, "BAD_CURVE", "curve must be P-256 or P-384");
    }
    if (auto a = optional_string(body, "alg")) {
        g.jwt_alg = core::parse_jwt_alg(*a);
        if (!g.jwt_alg) throw ApiError(400, "BAD_ALG", "alg must be HS256, RS256, PS256, ES256 or EdDSA");
    }
    g.scopes = strings(body, "scopes");
    g.owner = optional_string(body, "owner").value_or("");
    if (body.contains("labels")) {
        if (!body["labels"].is_object()) throw ApiError(400, "BAD_TYPE", "'labels' must be an object of strings");
        for (const auto& [k, v] : body["labels"].items()) {
            if (!v.is_string()) throw ApiError(400, "BAD_TYPE", "'labels' must be an object of strings");
            g.labels[k] = v.get<std::string>();
        }
    }
    g.expires_in = optional_int(body, "expires_in");
    g.residency = app.config.default_residency;
    if (auto res = optional_string(body, "residency")) {
        auto parsed = core::parse_residency(*res);
        if (!parsed) throw ApiError(400, "BAD_RESIDENCY", "residency must be token or wrapped");
        g.residency = *parsed;
        g.allow_token_fallback = false;
    }
    return Response::json(key_json(app.keys.generate(g)), 201);
}

Response issue_token(App& app, const Request& r) {
    auto body = parse_body(r, {"name", "scopes", "expires_in", "prefix", "max_uses", "refill", "refill_amount",
                               "refill_seconds", "provisioning", "owner"});
    core::tokens::IssueRequest req;
    req.name = require_string(body, "name");
    req.scopes = strings(body, "scopes");
    req.expires_in = optional_int(body, "expires_in");
    req.prefix = optional_string(body, "prefix").value_or("kw_live");
    req.max_uses = optional_int(body, "max_uses");
    // "refill": "daily" | "monthly" | "monthly:DAY" | a duration ("12h");
    // "refill_seconds" is the older spelling of a duration.
    const auto refill_text = optional_string(body, "refill");
    const auto refill_seconds = optional_int(body, "refill_seconds");
    if (refill_text && refill_seconds) throw ApiError(400, "BAD_REFILL", "give 'refill' or 'refill_seconds', not both");
    if (refill_text) {
        req.refill = core::RefillSchedule::parse(*refill_text);
        if (!req.refill) {
            throw ApiError(
                400, "BAD_REFILL",
                "refill wants daily, monthly, monthly:DAY (1-28) or a duration like 12h, not '" + *refill_text + "'");
        }
    } else if (refill_seconds) {
        if (*refill_seconds <= 0) throw ApiError(400, "BAD_REFILL", "refill_seconds must be at least 1");
        req.refill = core::RefillSchedule{core::RefillSchedule::Kind::every, *refill_seconds, 1};
    }
    req.refill_amount = optional_int(body, "refill_amount");
    req.owner = optional_string(body, "owner").value_or("");
    if (body.contains("provisioning")) {
        if (!body["provisioning"].is_boolean()) throw ApiError(400, "BAD_TYPE", "'provisioning' must be a boolean");
        if (body["provisioning"].get<bool>()) req.type = core::KeyType::provisioning;
    }
    auto issued = app.tokens.issue(req);
    auto j = key_json(issued.key);
    j["token"] = std::string(issued.token.view());
    j["display"] = issued.display;
    return Response::json(j, 201);
}

Response key_action(App& app, const Request& r, const std::string& name, const std::string& action) {
    if (action == "rotate") {
        auto body = parse_body(r, {"strategy"});
        std::optional<core::rotation::Strategy> strategy;
        if (auto s = optional_string(body, "strategy")) {
            strategy = core::rotation::parse_strategy(*s);
            if (!strategy)
                throw ApiError(400, "BAD_STRATEGY", "strategy must be IMMEDIATE, OVERLAPPING, GRADUAL or BLUE_GREEN");
        }
        std::lock_guard lock(app.rotation_mutex);
        auto result = app.engine.rotate(name, strategy);
        auto j = rotation_json(result.record);
        if (result.new_token) j["token"] = *result.new_token;
        app.rotations.observe(result.record);
        return Response::json(j);
    }
    if (action == "rollback") {
        (void)parse_body(r, {});  // no fields: a stray one is refused, not ignored
        std::lock_guard lock(app.rotation_mutex);
        auto record = app.engine.rollback(name);
        app.rotations.observe(record);
        return Response::json(rotation_json(record));
    }
    auto body = parse_body(r, {"reason", "force"});
    const std::string reason = optional_string(body, "reason").value_or("");
    if (action == "revoke") {
        app.keys.revoke(name, reason);
        return Response::json(key_json(app.keys.get(name)));
    }
    static const std::map<std::string, core::LifecycleOp> ops{{"suspend", core::LifecycleOp::suspend},
                                                              {"resume", core::LifecycleOp::resume},
                                                              {"deactivate", core::LifecycleOp::deactivate},
                                                              {"compromise", core::LifecycleOp::compromise},
                                                              {"destroy", core::LifecycleOp::destroy}};
    auto op = ops.find(action);
    if (op == ops.end()) throw ApiError(404, "NOT_FOUND", "no key action '" + action + "'");
    if (body.contains("force") && !body["force"].is_boolean())
        throw ApiError(400, "BAD_TYPE", "'force' must be a boolean");
    const bool force = body.contains("force") && body["force"].get<bool>();
    app.keys.apply(name, op->second, reason, force);
    return Response::json(key_json(app.keys.get(name)));
}

// A query-string number: decimal digits only (std::stoull would accept "-1"
// as a huge number and throw on "abc", which would become a 500).
std::optional<std::uint64_t> query_number(const std::string& s) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

// The whole log as a keywarden-audit-export-v1 document, ending on a
// checkpoint signed now: `hsm-keytool audit verify --offline` checks it
// with the public key in its header, without the HSM. Built in memory (the
// answer is not streamed): very large logs are better exported with
// `hsm-keytool audit export` on the host.
Response audit_export(App& app) {
    app.audit.flush();
    app.audit.checkpoint_now();
    Response resp;
    resp.content_type = "application/x-ndjson";
    const std::string pem = core::spki_to_pem(app.audit.keys().public_key());
    const auto n = core::audit::write_export(app.audit.sink(), pem, app.token.info().label, app.keys.clock().now(),
                                             [&](const std::string& line) { resp.body += line; });
    resp.headers["Content-Disposition"] = "attachment; filename=\"keywarden-audit.jsonl\"";
    resp.headers["X-Keywarden-Audit-Events"] = std::to_string(n.events);
    return resp;
}

Response audit_query(App& app, const Request& r) {
    core::audit::Query q;
    if (auto it = r.query.find("key"); it != r.query.end()) q.key = it->second;
    if (auto it = r.query.find("event"); it != r.query.end()) {
        q.type = core::audit::parse_event_type(it->second);
        if (!q.type) throw ApiError(400, "BAD_EVENT", "unknown event type '" + it->second + "'");
    }
    if (auto it = r.query.find("since"); it != r.query.end()) {
        auto d = core::parse_duration(it->second);
        if (!d) throw ApiError(400, "BAD_SINCE", "since wants a duration like 1h");
        q.since = app.keys.clock().now() - *d;
    }
    if (auto it = r.query.find("after"); it != r.query.end()) {
        auto n = query_number(it->second);
        if (!n) throw ApiError(400, "BAD_AFTER", "after wants an event seq (a non-negative integer)");
        q.after_seq = *n;
    }
    if (auto it = r.query.find("limit"); it != r.query.end()) {
        auto n = query_number(it->second);
        if (!n || *n == 0) throw ApiError(400, "BAD_LIMIT", "limit wants a positive integer");
        q.limit = static_cast<std::size_t>(std::min<std::uint64_t>(10000, *n));
    }
    app.audit.flush();  // the caller's own recent events are in the answer
    nlohmann::json events = nlohmann::json::array();
    for (const auto& e : app.audit.sink().query(q)) events.push_back(core::audit::to_json(e));
    return Response::json({{"events", events}});
}

}  // namespace

Response admin(App& app, const Request& r, const std::string& path) {
    const auto admin = authorize(app, r, "admin");
    const bool get = r.method == "GET";
    const bool post = r.method == "POST";
    if (path == "/keys" && get) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& k : app.keys.list()) arr.push_back(key_json(k));
        return Response::json({{"keys", arr}});
    }
    if (path == "/keys" && post) return create_key(app, r);
    if (path == "/tokens" && post) return issue_token(app, r);
    if (path.rfind("/keys/", 0) == 0) {
        std::string rest = path.substr(6);
        auto slash = rest.rfind('/');
        if (slash != std::string::npos) {
            const std::string name = rest.substr(0, slash);
            const std::string action = rest.substr(slash + 1);
            if (get && action == "rotation") {
                std::lock_guard lock(app.rotation_mutex);
                auto s = app.engine.status(name);
                return Response::json({{"rotation", s ? rotation_json(*s) : nlohmann::json(nullptr)}});
            }
            if (get && action == "usage") {
                app.audit.flush();  // usage by outcome and last use are counted from the audit log
                auto key = app.keys.get(name);
                const auto now = app.keys.clock().now();
                nlohmann::json toks = nlohmann::json::array();
                for (const auto& v : key.versions) {
                    // Counts not yet flushed are merged in, so the answer is exact.
                    if (auto rec = app.usage.record(v.kid)) {
                        auto left = rec->remaining(now);
                        auto refill = rec->next_refill(now);
                        toks.push_back(
                            {{"kid", rec->kid},
                             {"uses", rec->uses},
                             {"max_uses", rec->max_uses ? nlohmann::json(*rec->max_uses) : nlohmann::json(nullptr)},
                             {"credits_remaining", left ? nlohmann::json(*left) : nlohmann::json(nullptr)},
                             {"refill",
                              rec->refill ? nlohmann::json(rec->refill->to_string()) : nlohmann::json(nullptr)},
                             {"refill_amount",
                              rec->refill_amount ? nlohmann::json(*rec->refill_amount) : nlohmann::json(nullptr)},
                             {"next_refill",
                              refill ? nlohmann::json(core::format_time(*refill)) : nlohmann::json(nullptr)},
                             {"last_used_at", rec->last_used_at ? nlohmann::json(core::format_time(*rec->last_used_at))
                                                                : nlohmann::json(nullptr)}});
                    } else {
                        auto last = app.store.last_used(v.kid);
                        toks.push_back({{"kid", v.kid},
                                        {"last_used_at",
                                         last ? nlohmann::json(core::format_time(*last)) : nlohmann::json(nullptr)}});
                    }
                }
                auto by_outcome = app.store.usage_by_outcome(name);
                // Denials suppressed by sampling and not yet carried by an audited one.
                if (auto pending = app.denials.pending(name); pending > 0) by_outcome["RATE_LIMITED"] += pending;
                return Response::json({{"key", name}, {"versions", toks}, {"by_outcome", by_outcome}});
            }
            if (post) return key_action(app, r, name, action);
        }
        // Key names may hold '/' ("payments/eu"): a GET that names no known
        // action is the whole name. (The actions win: a key named
        // "x/usage" is read as the usage of "x".)
        if (get) return Response::json(key_json(app.keys.describe(rest)));
    }
    if (path == "/rotations" && get) {
        std::lock_guard lock(app.rotation_mutex);
        nlohmann::json arr = nlohmann::json::array();
        auto it = r.query.find("key");
        for (const auto& rec : app.engine.history(it != r.query.end() ? it->second : "", 100))
            arr.push_back(rotation_json(rec));
        return Response::json({{"rotations", arr}});
    }
    if (path == "/rotations/stats" && get) {
        std::lock_guard lock(app.rotation_mutex);
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& s : app.engine.stats()) {
            arr.push_back({{"strategy", s.strategy},
                           {"total", s.total},
                           {"succeeded", s.succeeded},
                           {"failed", s.failed},
                           {"rolled_back", s.rolled_back},
                           {"success_rate", s.success_rate},
                           {"mean_seconds", s.mean_seconds},
                           {"p95_seconds", s.p95_seconds}});
        }
        return Response::json({{"stats", arr}});
    }
    if (path == "/policies/reload" && post) {
        (void)parse_body(r, {});  // no fields: a body must be empty or {}
        std::lock_guard lock(app.rotation_mutex);
        auto doc = app.store.policy_document();
        try {
            auto parsed = doc ? core::rotation::PolicySet::parse(doc->second, doc->first) : core::rotation::PolicySet{};
            app.policies = std::move(parsed);
        } catch (const std::exception& e) {
            throw ApiError(
                409, "POLICY_INVALID",
                std::string("the stored policy set does not parse; the policies in force are kept: ") + e.what());
        }
        return Response::json({{"policies", app.policies.policies().size()}});
    }
    if (path == "/limits") return admin_limits(app, r, admin.kid);
    if (path == "/audit" && get) return audit_query(app, r);
    if (path == "/audit/export" && get) return audit_export(app);
    throw ApiError(404, "NOT_FOUND", "no admin endpoint " + r.method + " " + path);
}

}  // namespace kw::server
