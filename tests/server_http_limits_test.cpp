// keywardend through the C++ client: keep-alive, rate-limit exactness,
// credits refill, and the admin authentication matrix.
#include <doctest/doctest.h>

#include <thread>

#include "tests/support/server_env.hpp"

using namespace kw::test;
using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

std::string verify_code(HttpClient& c, const std::string& token, std::string_view bearer = {}) {
    auto r = c.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump(), bearer);
    return r.json()["code"];
}

}  // namespace

TEST_CASE("keep-alive: many requests of every kind on one connection, TCP and unix") {
    const auto& w = world();
    for (auto* transport : {"tcp", "unix"}) {
        CAPTURE(transport);
        auto c = std::string_view(transport) == "tcp" ? tcp_client() : unix_client();
        for (int i = 0; i < 25; ++i) {
            auto h = c.get("/healthz");
            REQUIRE(h.status == 200);
            CHECK(h.keep_alive);
            CHECK(verify_code(c, w.svc) == "VALID");
            auto s = c.post("/v1/keys/c-hmac/hmac", json{{"data", b64("ka")}}, w.svc);
            CHECK(s.status == 200);
            // Error answers keep the connection too.
            auto e = c.post("/v1/keys/c-hmac/hmac", json{{"data", "***"}}, w.svc);
            CHECK(e.status == 400);
            CHECK(e.keep_alive);
            CHECK(c.get("/v1/nowhere").status == 404);
            CHECK(c.get("/v1/admin/keys").status == 401);
        }
        CHECK(c.connects() == 1);
        CHECK(c.connected());
    }
}

TEST_CASE("token rate limit: N allowed, N+1 denied with its reset, one more after one emission interval") {
    auto t = issue_token({{"name", "c-rl"}});
    const std::string token = t["token"];
    const std::string kid = t["versions"][0]["kid"];
    // 4 per 4 s, burst 4: one request's worth comes back every 1000 ms.
    admin_call("PUT", "/v1/admin/limits", {{"token_kid", kid}, {"limit", 4}, {"period_ms", 4000}, {"burst", 4}});
    auto c = tcp_client();
    const auto start = Clock::now();
    std::vector<HttpResponse> rs;
    for (int i = 0; i < 5; ++i) rs.push_back(c.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump()));
    const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    REQUIRE_MESSAGE(took < milliseconds(900), "5 verifications took " << took.count() << " ms: too slow to test");
    for (int i = 0; i < 4; ++i) {
        CAPTURE(i);
        auto j = rs[i].json();
        CHECK(rs[i].status == 200);
        CHECK(j["code"] == "VALID");
        CHECK(j["ratelimit"]["limit"] == 4);
        CHECK(j["ratelimit"]["remaining"] == 3 - i);
        CHECK(rs[i].header("ratelimit-remaining") == std::to_string(3 - i));
    }
    auto denied = rs[4].json();
    CHECK(rs[4].status == 429);
    CHECK(denied["code"] == "RATE_LIMITED");
    CHECK(denied["valid"] == false);
    CHECK(denied["ratelimit"]["remaining"] == 0);
    const auto retry = denied["ratelimit"]["retry_after_ms"].get<std::int64_t>();
    const auto reset = denied["ratelimit"]["reset_ms"].get<std::int64_t>();
    CHECK(retry > 0);
    CHECK(retry <= 1000);
    CHECK(reset >= retry);
    CHECK(reset <= 4000);
    CHECK(rs[4].header("ratelimit-reset") == std::to_string((reset + 999) / 1000));
    CHECK(rs[4].header("ratelimit-remaining") == "0");

    // A batch item over the limit is answered in the batch, with 200.
    auto b = c.request("POST", "/v1/tokens/verify:batch", json{{"tokens", {{{"token", token}}}}}.dump());
    CHECK(b.status == 200);
    CHECK(b.json()["results"][0]["code"] == "RATE_LIMITED");

    // After retry_after_ms exactly one request fits again, not two.
    std::this_thread::sleep_for(milliseconds(retry + 150));
    auto again = c.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump());
    auto over = c.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump());
    CHECK(again.json()["code"] == "VALID");
    CHECK(again.json()["ratelimit"]["remaining"] == 0);
    CHECK(over.status == 429);
    // Rate-limited answers spent no use: 4 + 1 VALID.
    CHECK(admin_call("GET", "/v1/admin/keys/c-rl/usage")["by_outcome"]["VALID"] == 5);
}

TEST_CASE("key rate limit: N signatures, then 429 for that key only") {
    const auto& w = world();
    admin_call("PUT", "/v1/admin/limits", {{"key", "c-hmac"}, {"limit", 3}, {"period_ms", 6000}, {"burst", 3}});
    auto c = tcp_client();
    std::vector<int> statuses;
    for (int i = 0; i < 4; ++i)
        statuses.push_back(c.post("/v1/keys/c-hmac/hmac", json{{"data", b64("k")}}, w.svc).status);
    CHECK(statuses == std::vector<int>{200, 200, 200, 429});
    auto last = c.post("/v1/keys/c-hmac/hmac", json{{"data", b64("k")}}, w.svc);
    CHECK(last.error_code() == "RATE_LIMITED");
    // The refusal says when to come back: in the body and in the headers.
    const auto retry = last.json()["ratelimit"]["retry_after_ms"].get<std::int64_t>();
    CHECK(retry > 0);
    CHECK(retry <= 2000);  // one emission interval of 3 per 6 s
    CHECK(last.json()["ratelimit"]["limit"] == 3);
    CHECK(last.json()["ratelimit"]["remaining"] == 0);
    CHECK(last.header("retry-after") == std::to_string((retry + 999) / 1000));
    CHECK(last.header("ratelimit-remaining") == "0");
    CHECK(c.post("/v1/keys/c-ecdsa/sign", json{{"data", b64("k")}}, w.svc).status == 200);
    admin_call("PUT", "/v1/admin/limits", {{"key", "c-hmac"}, {"limit", 1000}, {"period_ms", 1000}, {"burst", 1000}});
    CHECK(c.post("/v1/keys/c-hmac/hmac", json{{"data", b64("k")}}, w.svc).status == 200);
}

TEST_CASE("a credential's own rate limit holds when it signs, not only when it is verified") {
    const auto& w = world();
    auto t = issue_token({{"name", "c-cred-rl"}, {"scopes", {"sign:c-hmac"}}});
    const std::string token = t["token"];
    const std::string kid = t["versions"][0]["kid"];
    admin_call("PUT", "/v1/admin/limits", {{"token_kid", kid}, {"limit", 2}, {"period_ms", 60000}, {"burst", 2}});
    auto c = tcp_client();
    CHECK(c.post("/v1/keys/c-hmac/hmac", json{{"data", b64("1")}}, token).status == 200);
    CHECK(c.post("/v1/keys/c-hmac/hmac", json{{"data", b64("2")}}, token).status == 200);
    auto denied = c.post("/v1/keys/c-hmac/hmac", json{{"data", b64("3")}}, token);
    CHECK(denied.status == 429);
    CHECK(denied.error_code() == "RATE_LIMITED");
    CHECK(denied.json()["ratelimit"]["limit"] == 2);
    CHECK(denied.json()["ratelimit"]["retry_after_ms"].get<std::int64_t>() > 29000);  // 30 s per request
    CHECK(!denied.header("retry-after").empty());
    // Another credential on the same key is not affected.
    CHECK(c.post("/v1/keys/c-hmac/hmac", json{{"data", b64("4")}}, w.svc).status == 200);
    auto events = admin_call("GET", "/v1/admin/audit?event=rate_limited&key=c-cred-rl");
    REQUIRE(events["events"].size() == 1);
    CHECK(events["events"][0]["op"] == "authorize");
    CHECK(events["events"][0]["kid"] == kid);
    admin_call("DELETE", "/v1/admin/limits", {{"token_kid", kid}});
    CHECK(c.post("/v1/keys/c-hmac/hmac", json{{"data", b64("5")}}, token).status == 200);
}

TEST_CASE("credits: max_uses per period, refilled when the period ends") {
    auto t = issue_token({{"name", "c-credits"}, {"max_uses", 2}, {"refill_seconds", 2}});
    const std::string token = t["token"];
    auto c = tcp_client();
    auto v1 = c.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump()).json();
    auto v2 = c.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump()).json();
    auto v3 = c.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump()).json();
    CHECK(v1["credits"]["remaining"] == 1);
    CHECK(v2["credits"]["remaining"] == 0);
    CHECK(v3["code"] == "USAGE_EXCEEDED");
    REQUIRE(v3["credits"]["refill"].is_string());
    const std::int64_t refill = parse_utc(v3["credits"]["refill"]);
    const std::int64_t now = unix_now();
    CHECK(refill > now - 1);
    CHECK(refill <= now + 2);
    while (unix_now() < refill) std::this_thread::sleep_for(milliseconds(50));
    std::this_thread::sleep_for(milliseconds(100));
    auto c2 = tcp_client();  // the first connection may have idled out
    auto v4 = c2.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump()).json();
    auto v5 = c2.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump()).json();
    auto v6 = c2.request("POST", "/v1/tokens/verify", json{{"token", token}}.dump()).json();
    CHECK(v4["code"] == "VALID");
    CHECK(v4["credits"]["remaining"] == 1);
    CHECK(v5["credits"]["remaining"] == 0);
    CHECK(v6["code"] == "USAGE_EXCEEDED");
    CHECK(parse_utc(v6["credits"]["refill"]) >= refill + 2);
    auto u = admin_call("GET", "/v1/admin/keys/c-credits/usage");
    CHECK(u["by_outcome"]["VALID"] == 4);
    CHECK(u["by_outcome"]["USAGE_EXCEEDED"] == 2);
}

TEST_CASE("credits: a refill schedule and amount, and a cost that spends several credits or none") {
    auto t = issue_token({{"name", "c-monthly"}, {"max_uses", 5}, {"refill", "monthly:15"}, {"refill_amount", 7}});
    const std::string token = t["token"];
    auto c = tcp_client();
    auto v1 = c.request("POST", "/v1/tokens/verify", json{{"token", token}, {"cost", 3}}.dump()).json();
    CHECK(v1["code"] == "VALID");
    CHECK(v1["credits"]["remaining"] == 2);
    // The next refill is 00:00 UTC on a 15th, within a month.
    const std::string refill = v1["credits"]["refill"];
    CHECK(refill.substr(8) == "15T00:00:00Z");
    CHECK(parse_utc(refill) > unix_now());
    CHECK(parse_utc(refill) <= unix_now() + 31 * 86400);
    auto v2 = c.request("POST", "/v1/tokens/verify", json{{"token", token}, {"cost", 3}}.dump()).json();
    CHECK(v2["code"] == "USAGE_EXCEEDED");  // 3 wanted, 2 left: nothing spent
    auto v3 = c.request("POST", "/v1/tokens/verify", json{{"token", token}, {"cost", 2}}.dump()).json();
    CHECK(v3["code"] == "VALID");
    CHECK(v3["credits"]["remaining"] == 0);
    auto u = admin_call("GET", "/v1/admin/keys/c-monthly/usage");
    CHECK(u["versions"][0]["uses"] == 5);
    CHECK(u["versions"][0]["refill"] == "monthly:15");
    CHECK(u["versions"][0]["refill_amount"] == 7);
    CHECK(u["versions"][0]["next_refill"] == refill);

    auto bad = [&](const json& body) {
        auto r = call("POST", "/v1/admin/tokens", body, server_env().admin);
        CHECK(r.status == 400);
        return r.error_code();
    };
    CHECK(bad({{"name", "c-bad1"}, {"max_uses", 5}, {"refill", "weekly"}}) == "BAD_REFILL");
    CHECK(bad({{"name", "c-bad2"}, {"max_uses", 5}, {"refill", "monthly:31"}}) == "BAD_REFILL");
    CHECK(bad({{"name", "c-bad3"}, {"max_uses", 5}, {"refill", "daily"}, {"refill_seconds", 60}}) == "BAD_REFILL");
    CHECK(bad({{"name", "c-bad4"}, {"refill", "daily"}}) == "INVALID_ARGUMENT");  // no first allowance
    CHECK(bad({{"name", "c-bad5"}, {"max_uses", 5}, {"refill_amount", 2}}) == "INVALID_ARGUMENT");
}

TEST_CASE("admin auth matrix") {
    const auto& w = world();
    const auto& admin = server_env().admin;
    auto sus = issue_token({{"name", "c-adm-sus"}, {"scopes", {"admin"}}})["token"].get<std::string>();
    admin_call("POST", "/v1/admin/keys/c-adm-sus/suspend", json::object());
    auto rev = issue_token({{"name", "c-adm-rev"}, {"scopes", {"admin"}}})["token"].get<std::string>();
    admin_call("POST", "/v1/admin/keys/c-adm-rev/revoke", json::object());
    auto once =
        issue_token({{"name", "c-adm-once"}, {"scopes", {"admin"}}, {"max_uses", 1}})["token"].get<std::string>();
    auto exp =
        issue_token({{"name", "c-adm-exp"}, {"scopes", {"admin"}}, {"expires_in", 1}})["token"].get<std::string>();
    auto wide = issue_token({{"name", "c-adm-wide"}, {"scopes", {"sign:*", "verify:*", "read_write"}}})["token"]
                    .get<std::string>();
    const auto exp_issued = Clock::now();
    CHECK(call_get("/v1/admin/keys", exp).status == 200);  // before its expiry

    struct Endpoint {
        const char* method;
        const char* target;
        const char* body;
        int ok_status;
    };
    const Endpoint endpoints[] = {
        {"GET", "/v1/admin/keys", "", 200},
        {"GET", "/v1/admin/audit?limit=1", "", 200},
        {"GET", "/v1/admin/rotations/stats", "", 200},
        {"PUT", "/v1/admin/limits", R"({"key":"c-adm-wide","limit":9})", 200},
        {"GET", "/v1/admin/limits", "", 200},
        {"DELETE", "/v1/admin/limits", R"({"key":"c-adm-wide"})", 200},
        {"POST", "/v1/admin/policies/reload", "{}", 200},
        {"GET", "/v1/admin/no-such-endpoint", "", 404},  // authentication comes before routing
    };
    struct Caller {
        std::string name;
        std::string authorization;  // sent verbatim; "" = no header
        int status;
        std::string code;
    };
    const std::vector<Caller> callers = {
        {"no header", "", 401, "AUTH_MISSING"},
        {"Basic", "Basic YWRtaW46YWRtaW4=", 401, "AUTH_MALFORMED"},
        {"empty bearer", "Bearer ", 401, "AUTH_MALFORMED"},
        {"not a token", "Bearer not-a-keywarden-token", 401, "AUTH_MALFORMED"},
        {"one character changed", "Bearer " + admin.substr(0, admin.size() - 1) + (admin.back() == 'A' ? "B" : "A"),
         401, "AUTH_MALFORMED"},
        {"unknown well-formed", "Bearer " + unknown_token(), 401, "AUTH_INVALID"},
        {"suspended admin", "Bearer " + sus, 401, "AUTH_DISABLED"},
        {"revoked admin", "Bearer " + rev, 401, "AUTH_REVOKED"},
        {"service token", "Bearer " + w.svc, 403, "AUTH_SCOPE"},
        {"sign/verify globs", "Bearer " + wide, 403, "AUTH_SCOPE"},
    };
    for (const auto& e : endpoints) {
        for (const auto& caller : callers) {
            CAPTURE(e.method);
            CAPTURE(e.target);
            CAPTURE(caller.name);
            auto c = tcp_client();
            auto r = c.request(e.method, e.target, e.body, {}, caller.authorization);
            CHECK(r.status == caller.status);
            CHECK(r.error_code() == caller.code);
        }
        auto ok = tcp_client().request(e.method, e.target, e.body, admin);
        CAPTURE(e.target);
        CHECK(ok.status == e.ok_status);
    }
    // Single use: the first call spends it.
    CHECK(call_get("/v1/admin/keys", once).status == 200);
    auto exhausted = call_get("/v1/admin/keys", once);
    CHECK(exhausted.status == 401);
    CHECK(exhausted.error_code() == "AUTH_EXHAUSTED");
    // Expiry (1 s, whole seconds): wait past it.
    std::this_thread::sleep_until(exp_issued + milliseconds(2100));
    auto expired = call_get("/v1/admin/keys", exp);
    CHECK(expired.status == 401);
    CHECK(expired.error_code() == "AUTH_EXPIRED");
    // The admin scope grants the non-admin scopes too.
    CHECK(call("POST", "/v1/keys/c-hmac/hmac", json{{"data", b64("a")}}, admin).status == 200);
}
