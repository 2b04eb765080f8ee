// POST /v1/tokens/verify and /v1/tokens/verify:batch
#include "core/error.hpp"
#include "core/tokens/format.hpp"
#include "server/app.hpp"
#include "server/verify_json.hpp"

namespace kw::server {
namespace {

using core::tokens::VerifyCode;

void count_not_found(App& app, const Request& r, const VerifyAnswer& a) {
    if (a.verification.code == VerifyCode::NOT_FOUND) count_unknown_token(app, r);
}

// A request's (or batch item's) "cost": what it spends of the rate limit and credits.
std::int64_t cost_of(const nlohmann::json& j) {
    const std::int64_t cost = optional_int(j, "cost").value_or(1);
    if (cost < 1 || cost > 1000) throw ApiError(400, "BAD_COST", "cost must be 1..1000");
    return cost;
}

VerifyAnswer verify_one(App& app, std::string_view token, const std::optional<std::string>& scope, std::int64_t cost) {
    VerifyAnswer a;
    core::ratelimit::Decision& rl = a.rate;
    auto gate = [&](const core::tokens::Verification& v) {
        rl = app.token_limits.take(v.kid, cost);
        a.limited = !rl.allowed;
        return rl.allowed;
    };
    a.verification =
        app.tokens.verify(token, scope ? std::optional<std::string_view>(*scope) : std::nullopt, gate, cost);
    const auto& v = a.verification;
    note_verification(app, v, cost);
    if (a.limited) {
        app.metrics.inc("keywarden_rate_limit_denials_total", {{"scope", "token"}});
        audit_rate_limited(app, v.name, v.kid, "verify_token", {{"retry_after_ms", rl.retry_after_ms}});
    }
    return a;
}

std::string bearer(const Request& r) {
    const std::string prefix = "Bearer ";
    if (r.authorization.rfind(prefix, 0) == 0) return r.authorization.substr(prefix.size());
    return {};
}

}  // namespace

Response tokens_verify(App& app, const Request& r) {
    // The token may come alone in the Authorization header, with no body.
    auto body =
        r.body.empty() && !bearer(r).empty() ? nlohmann::json::object() : parse_body(r, {"token", "scope", "cost"});
    std::string token = body.contains("token") ? require_string(body, "token") : bearer(r);
    if (token.empty()) throw ApiError(400, "MISSING_FIELD", "give the token in 'token' or as Authorization: Bearer");
    refuse_slowed_caller(app, r);
    const VerifyAnswer a = verify_one(app, token, optional_string(body, "scope"), cost_of(body));
    count_not_found(app, r, a);
    Response resp;
    resp.status = a.verification.code == VerifyCode::RATE_LIMITED ? 429 : 200;
    append_verify_json(resp.body, a);
    resp.body += '\n';
    add_rate_headers(resp, a.rate);
    return resp;
}

Response tokens_verify_batch(App& app, const Request& r) {
    auto body = parse_body(r, {"tokens"});
    if (!body.contains("tokens") || !body["tokens"].is_array()) {
        throw ApiError(400, "BAD_TYPE", "'tokens' must be an array of {token, scope?, cost?}");
    }
    if (body["tokens"].size() > 100) throw ApiError(413, "BATCH_TOO_LARGE", "at most 100 tokens per batch");
    // Every item is checked before any is verified: a bad item must not
    // leave the ones before it verified, spent and audited behind a 400.
    struct Item {
        std::string token;
        std::optional<std::string> scope;
        std::int64_t cost = 1;
    };
    std::vector<Item> items;
    items.reserve(body["tokens"].size());
    for (const auto& item : body["tokens"]) {
        if (!item.is_object()) throw ApiError(400, "BAD_TYPE", "each batch item must be an object");
        for (const auto& [k, v] : item.items()) {
            if (k != "token" && k != "scope" && k != "cost")
                throw ApiError(400, "UNKNOWN_FIELD", "unknown field '" + k + "'");
        }
        items.push_back({require_string(item, "token"), optional_string(item, "scope"), cost_of(item)});
    }
    refuse_slowed_caller(app, r);
    Response resp;
    resp.body = "{\"results\":[";
    bool first = true;
    for (const auto& item : items) {
        const VerifyAnswer a = verify_one(app, item.token, item.scope, item.cost);
        count_not_found(app, r, a);
        if (!first) resp.body += ',';
        first = false;
        append_verify_json(resp.body, a);
    }
    resp.body += "]}\n";
    return resp;
}

}  // namespace kw::server
