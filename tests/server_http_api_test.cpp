// keywardend's endpoints through the C++ client (tests/support/http_client):
// each endpoint's success and at least one error path. tests/server_test.sh
// covers the same API with curl; here the checks lean on what a second,
// independent client can cross-check (counters that move by exact amounts,
// signatures checked by another endpoint, paging that must add up).
#include <doctest/doctest.h>

#include <regex>
#include <set>

#include "tests/support/server_env.hpp"

using namespace kw::test;
using nlohmann::json;

namespace {

void check_error(const HttpResponse& r, int status, const std::string& code) {
    INFO("body: " << r.body);
    CHECK(r.status == status);
    CHECK(r.error_code() == code);
    CHECK(r.header("content-type") == "application/json");
}

// The value of one Prometheus series (0 when absent).
double metric(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return 0;
}

}  // namespace

TEST_CASE("healthz, readyz, metrics") {
    auto h = call("GET", "/healthz");
    CHECK(h.status == 200);
    CHECK(h.json() == json{{"status", "ok"}});
    check_error(call("POST", "/healthz", json::object()), 404, "NOT_FOUND");

    auto r = call("GET", "/readyz");
    CHECK(r.status == 200);
    CHECK(r.json()["ready"] == true);
    CHECK(r.json()["checks"]["token_logged_in"] == true);
    CHECK(r.json()["checks"]["store"] == "ok");
    check_error(call("DELETE", "/readyz"), 404, "NOT_FOUND");

    // Counters move by exactly what this client did (it is the only client).
    const std::string healthz = R"(keywarden_http_requests_total{route="/healthz",status="200"})";
    const std::string other404 = R"(keywarden_http_requests_total{route="other",status="404"})";
    auto m0 = call("GET", "/metrics");
    REQUIRE(m0.status == 200);
    CHECK(m0.header("content-type") == "text/plain; version=0.0.4");
    for (int i = 0; i < 7; ++i) REQUIRE(call("GET", "/healthz").status == 200);
    for (int i = 0; i < 3; ++i) REQUIRE(call("GET", "/v1/no-such-" + std::to_string(i)).status == 404);
    auto m1 = call("GET", "/metrics");
    CHECK(metric(m1.body, healthz) == metric(m0.body, healthz) + 7);
    CHECK(metric(m1.body, other404) == metric(m0.body, other404) + 3);
    CHECK(m1.body.find("no-such-") == std::string::npos);  // unknown paths create no series
}

TEST_CASE("POST /v1/tokens/verify") {
    const auto& w = world();
    auto r = call("POST", "/v1/tokens/verify", json{{"token", w.svc}, {"scope", "verify:c-hmac"}, {"cost", 3}});
    REQUIRE(r.status == 200);
    auto j = r.json();
    CHECK(j["code"] == "VALID");
    CHECK(j["valid"] == true);
    CHECK(j["key"]["name"] == "c-svc");
    CHECK(j["key"]["kid"] == w.svc_kid);
    CHECK(j["credits"]["remaining"].is_null());
    CHECK(j["ratelimit"]["limit"] == 1000000);  // world() lifts c-svc's limit (support/server_env.cpp)
    CHECK(std::stoi(r.header("ratelimit-remaining")) == j["ratelimit"]["remaining"].get<int>());

    // The token alone in the Authorization header, no body at all.
    auto header_only = call("POST", "/v1/tokens/verify", std::string_view(), w.svc);
    CHECK(header_only.status == 200);
    CHECK(header_only.json()["code"] == "VALID");
    check_error(call("POST", "/v1/tokens/verify", std::string_view()), 400, "EMPTY_BODY");

    auto miss = call("POST", "/v1/tokens/verify", json{{"token", w.svc}, {"scope", "sign:other"}});
    CHECK(miss.json()["code"] == "INSUFFICIENT_SCOPE");
    check_error(call("POST", "/v1/tokens/verify", json{{"token", w.svc}, {"cost", 1001}}), 400, "BAD_COST");
    check_error(call("POST", "/v1/tokens/verify", json{{"token", w.svc}, {"scope", 7}}), 400, "BAD_TYPE");
}

TEST_CASE("POST /v1/tokens/verify:batch answers per item, in order") {
    const auto& w = world();
    auto gone = issue_token({{"name", "c-gone"}});
    admin_call("POST", "/v1/admin/keys/c-gone/revoke", json::object());
    auto once = issue_token({{"name", "c-once"}, {"max_uses", 1}});
    json items = json::array({
        {{"token", w.svc}},
        {{"token", w.svc}, {"scope", "admin"}},
        {{"token", "kw_live_garbage"}},
        {{"token", unknown_token()}},
        {{"token", gone["token"]}},
        {{"token", once["token"]}},
        {{"token", once["token"]}},
        {{"token", w.narrow}, {"scope", "verify:c-rsa"}, {"cost", 2}},
    });
    auto r = call("POST", "/v1/tokens/verify:batch", json{{"tokens", items}});
    REQUIRE(r.status == 200);
    auto res = r.json()["results"];
    REQUIRE(res.size() == items.size());
    std::vector<std::string> codes;
    for (const auto& x : res) codes.push_back(x["code"]);
    CHECK(codes == std::vector<std::string>{"VALID", "INSUFFICIENT_SCOPE", "MALFORMED", "NOT_FOUND", "REVOKED", "VALID",
                                            "USAGE_EXCEEDED", "VALID"});
    CHECK(res[0]["key"]["name"] == "c-svc");
    CHECK(!res[2].contains("key"));  // nothing is said about a token that was not found
    CHECK(!res[3].contains("key"));
    CHECK(res[5]["credits"]["remaining"] == 0);
    CHECK(res[7]["key"]["name"] == "c-narrow");
    check_error(call("POST", "/v1/tokens/verify:batch", json{{"tokens", {"not-an-object"}}}), 400, "BAD_TYPE");
    check_error(call("POST", "/v1/tokens/verify:batch", json{{"tokens", {{{"scope", "x"}}}}}), 400, "MISSING_FIELD");
    // A bad item refuses the whole batch before any item is verified: the
    // good one before it spends no credit.
    auto t = issue_token({{"name", "c-batch-credits"}, {"max_uses", 3}});
    const std::string token = t["token"];
    check_error(call("POST", "/v1/tokens/verify:batch",
                     json{{"tokens", {{{"token", token}}, {{"token", token}, {"cost", 5000}}}}}),
                400, "BAD_COST");
    CHECK(call("POST", "/v1/tokens/verify", json{{"token", token}}).json()["credits"]["remaining"] == 2);
}

TEST_CASE("sign, verify and hmac; one endpoint checks the other") {
    const auto& w = world();
    const std::string msg = "a message for keywarden's C++ client";
    // ECDSA, DER and raw.
    auto s = call("POST", "/v1/keys/c-ecdsa/sign", json{{"data", b64(msg)}}, w.svc);
    REQUIRE(s.status == 200);
    const std::string kid = s.json()["kid"];
    auto v =
        call("POST", "/v1/keys/c-ecdsa/verify", json{{"data", b64(msg)}, {"signature", s.json()["signature"]}}, w.svc);
    CHECK(v.json() == json{{"valid", true}, {"kid", kid}});
    auto bad = call("POST", "/v1/keys/c-ecdsa/verify",
                    json{{"data", b64(msg + "!")}, {"signature", s.json()["signature"]}}, w.svc);
    CHECK(bad.json() == json{{"valid", false}, {"kid", nullptr}});
    auto raw =
        call("POST", "/v1/keys/c-ecdsa/sign", json{{"data", msg}, {"encoding", "utf8"}, {"format", "raw"}}, w.svc);
    REQUIRE(raw.status == 200);
    auto rv = call("POST", "/v1/keys/c-ecdsa/verify",
                   json{{"data", msg},
                        {"encoding", "utf8"},
                        {"format", "raw"},
                        {"kid", kid},
                        {"signature", raw.json()["signature"]}},
                   w.svc);
    CHECK(rv.json()["valid"] == true);

    // RSA-PSS: verifies as PSS, not as PKCS#1 v1.5.
    auto pss = call("POST", "/v1/keys/c-rsa/sign", json{{"data", b64(msg)}, {"padding", "pss"}}, w.svc);
    REQUIRE(pss.status == 200);
    CHECK(pss.json()["mechanism"].get<std::string>().find("PSS") != std::string::npos);
    json check{{"data", b64(msg)}, {"signature", pss.json()["signature"]}, {"padding", "pss"}};
    CHECK(call("POST", "/v1/keys/c-rsa/verify", check, w.svc).json()["valid"] == true);
    check["padding"] = "pkcs1";
    CHECK(call("POST", "/v1/keys/c-rsa/verify", check, w.svc).json()["valid"] == false);
    check_error(call("POST", "/v1/keys/c-rsa/sign", json{{"data", b64(msg)}, {"padding", "oaep"}}, w.svc), 400,
                "BAD_PADDING");
    check_error(call("POST", "/v1/keys/c-ecdsa/sign", json{{"data", b64(msg)}, {"format", "p1363"}}, w.svc), 400,
                "BAD_FORMAT");

    // HMAC: deterministic, verified by /verify, refused on a non-HMAC key.
    auto m1 = call("POST", "/v1/keys/c-hmac/hmac", json{{"data", msg}, {"encoding", "utf8"}}, w.svc);
    auto m2 = call("POST", "/v1/keys/c-hmac/hmac", json{{"data", b64(msg)}}, w.svc);
    REQUIRE(m1.status == 200);
    CHECK(m1.json()["mac"] == m2.json()["mac"]);
    CHECK(m1.json()["mechanism"] == "HMAC-SHA256");
    CHECK(call("POST", "/v1/keys/c-hmac/verify", json{{"data", b64(msg)}, {"signature", m1.json()["mac"]}}, w.svc)
              .json()["valid"] == true);
    check_error(call("POST", "/v1/keys/c-rsa/hmac", json{{"data", b64(msg)}}, w.svc), 400, "NOT_HMAC");
    // narrow may verify but not sign.
    check_error(call("POST", "/v1/keys/c-hmac/hmac", json{{"data", b64(msg)}}, w.narrow), 403, "AUTH_SCOPE");
    CHECK(call("POST", "/v1/keys/c-hmac/verify", json{{"data", b64(msg)}, {"signature", m1.json()["mac"]}}, w.narrow)
              .json()["valid"] == true);
}

TEST_CASE("JWT sign and the JWKS that names its kid") {
    const auto& w = world();
    auto r = call("POST", "/v1/jwt/c-jwt/sign", json{{"claims", {{"sub", "cpp"}, {"n", 7}}}, {"ttl", 120}}, w.svc);
    REQUIRE(r.status == 200);
    const std::string token = r.json()["jwt"];
    const auto d1 = token.find('.'), d2 = token.rfind('.');
    REQUIRE(d1 != d2);
    auto header = json::parse(b64url_decode(token.substr(0, d1)));
    auto claims = json::parse(b64url_decode(token.substr(d1 + 1, d2 - d1 - 1)));
    CHECK(header["alg"] == "ES256");
    CHECK(header["kid"] == w.jwt_kid);
    CHECK(claims["sub"] == "cpp");
    CHECK(claims["exp"].get<std::int64_t>() - claims["iat"].get<std::int64_t>() == 120);
    // The JWS signature is raw ECDSA over "header.claims": /verify agrees.
    const std::string sig = b64url_decode(token.substr(d2 + 1));
    CHECK(sig.size() == 64);
    auto v = call("POST", "/v1/keys/c-jwt/verify",
                  json{{"data", token.substr(0, d2)}, {"encoding", "utf8"}, {"format", "raw"}, {"signature", b64(sig)}},
                  w.svc);
    CHECK(v.json() == json{{"valid", true}, {"kid", w.jwt_kid}});

    auto jwks = call("GET", "/.well-known/jwks.json");
    REQUIRE(jwks.status == 200);
    CHECK(jwks.header("cache-control").rfind("public, max-age=", 0) == 0);
    bool found = false;
    const auto set = jwks.json();
    for (const auto& k : set["keys"]) found = found || (k["kid"] == w.jwt_kid && k["kty"] == "EC");
    CHECK(found);
    check_error(call("POST", "/.well-known/jwks.json", json::object()), 404, "NOT_FOUND");

    check_error(call("POST", "/v1/jwt/c-jwt/sign", json{{"ttl", 60}}, w.svc), 400, "MISSING_FIELD");
    check_error(call("POST", "/v1/jwt/c-jwt/sign", json{{"claims", json::object()}, {"ttl", "1h"}}, w.svc), 400,
                "BAD_TYPE");
    check_error(call("POST", "/v1/jwt/c-jwt/sign", json{{"claims", json::object()}}, w.narrow), 403, "AUTH_SCOPE");
}

TEST_CASE("admin keys: create, list, show, suspend, resume, revoke") {
    const auto& w = world();
    auto k = admin_call("POST", "/v1/admin/keys",
                        {{"name", "c-adm"},
                         {"type", "ecdsa"},
                         {"curve", "P-384"},
                         {"owner", "cpp"},
                         {"labels", {{"tier", "gold"}}},
                         {"expires_in", 3600}},
                        201);
    CHECK(k["owner"] == "cpp");
    CHECK(k["labels"] == json{{"tier", "gold"}});
    CHECK(parse_utc(k["expires_at"]) - parse_utc(k["created_at"]) == 3600);
    const std::string id = k["id"];

    auto list = admin_call("GET", "/v1/admin/keys");
    std::set<std::string> names;
    for (const auto& x : list["keys"]) names.insert(x["name"]);
    CHECK(names.count("c-adm") == 1);
    CHECK(names.count("c-ecdsa") == 1);
    auto show = admin_call("GET", "/v1/admin/keys/c-adm");
    CHECK(show["id"] == id);
    CHECK(show["versions"][0]["state"] == "active");
    // A name with '/' is read, used and acted on through the same paths.
    admin_call("POST", "/v1/admin/keys", {{"name", "c-team/eu"}, {"type", "hmac"}}, 201);
    CHECK(admin_call("GET", "/v1/admin/keys/c-team/eu")["name"] == "c-team/eu");
    CHECK(admin_call("GET", "/v1/admin/keys/c-team/eu/usage")["key"] == "c-team/eu");
    CHECK(admin_call("POST", "/v1/admin/keys/c-team/eu/suspend", json::object())["versions"][0]["state"] ==
          "suspended");
    check_error(call_get("/v1/admin/keys/c-team/nowhere", server_env().admin), 404, "KEY_NOT_FOUND");

    // P-384 signs with SHA-384.
    auto s = call("POST", "/v1/keys/c-adm/sign", json{{"data", b64("x")}}, server_env().admin);
    CHECK(s.json()["mechanism"] == "ECDSA-SHA384");

    auto sus = admin_call("POST", "/v1/admin/keys/c-adm/suspend", {{"reason", "cpp test"}});
    CHECK(sus["versions"][0]["state"] == "suspended");
    check_error(call("POST", "/v1/keys/c-adm/sign", json{{"data", b64("x")}}, server_env().admin), 409,
                "NOT_PERMITTED");
    CHECK(admin_call("POST", "/v1/admin/keys/c-adm/resume", json::object())["versions"][0]["state"] == "active");
    auto rev = admin_call("POST", "/v1/admin/keys/c-adm/revoke", {{"reason", "done"}});
    CHECK(!rev["revoked_at"].is_null());
    check_error(call("POST", "/v1/keys/c-adm/sign", json{{"data", b64("x")}}, server_env().admin), 409,
                "NOT_PERMITTED");

    const auto& a = server_env().admin;
    check_error(call("POST", "/v1/admin/keys", json{{"name", "c-adm"}, {"type", "ecdsa"}}, a), 409, "ALREADY_EXISTS");
    check_error(call("POST", "/v1/admin/keys", json{{"name", "c-x"}, {"type", "rsa"}, {"size", "big"}}, a), 400,
                "BAD_TYPE");
    check_error(call("POST", "/v1/admin/keys", json{{"name", "c-x"}, {"type", "rsa"}, {"size", 1000}}, a), 400,
                "INVALID_ARGUMENT");
    check_error(call_get("/v1/admin/keys/c-nothing", a), 404, "KEY_NOT_FOUND");
    check_error(call("POST", "/v1/admin/keys/c-nothing/suspend", json::object(), a), 404, "KEY_NOT_FOUND");
    check_error(call("POST", "/v1/admin/keys/c-adm/suspend", json{{"reason", 1}}, a), 400, "BAD_TYPE");
    check_error(call("POST", "/v1/admin/keys/c-adm/suspend", json{{"force", "yes"}}, a), 400, "BAD_TYPE");
    check_error(call("POST", "/v1/admin/keys", json{{"name", "c-x"}, {"type", "jwt"}, {"alg", "HS999"}}, a), 400,
                "BAD_ALG");
    check_error(call("POST", "/v1/admin/keys", json{{"name", "c-x"}, {"type", "hmac"}, {"residency", "cloud"}}, a), 400,
                "BAD_RESIDENCY");
    (void)w;
}

TEST_CASE("admin tokens: issue") {
    auto t = issue_token({{"name", "c-issued"}, {"scopes", {"read_only"}}, {"max_uses", 3}, {"owner", "cpp"}});
    const std::string token = t["token"];
    CHECK(token.rfind("kw_live_", 0) == 0);
    CHECK(t["type"] == "api_token");
    CHECK(token.rfind(t["display"].get<std::string>().substr(0, t["display"].get<std::string>().size() - 3), 0) == 0);
    auto v = call("POST", "/v1/tokens/verify", json{{"token", token}, {"scope", "read_only"}}).json();
    CHECK(v["code"] == "VALID");
    CHECK(v["credits"]["remaining"] == 2);
    auto p = issue_token({{"name", "c-prefixed"}, {"prefix", "kw_test"}, {"provisioning", true}});
    CHECK(p["token"].get<std::string>().rfind("kw_test_", 0) == 0);
    CHECK(p["type"] == "provisioning");

    const auto& a = server_env().admin;
    check_error(call("POST", "/v1/admin/tokens", json{{"scopes", {"x"}}}, a), 400, "MISSING_FIELD");
    check_error(call("POST", "/v1/admin/tokens", json{{"name", "c-t2"}, {"refill_seconds", 60}}, a), 400,
                "INVALID_ARGUMENT");
    check_error(call("POST", "/v1/admin/tokens", json{{"name", "c-t2"}, {"provisioning", "yes"}}, a), 400, "BAD_TYPE");
}

TEST_CASE("rotation: rotate, status, history, stats, rollback; token keys get their successor") {
    admin_call("POST", "/v1/admin/keys", {{"name", "c-rot"}, {"type", "hmac"}}, 201);
    CHECK(admin_call("GET", "/v1/admin/keys/c-rot/rotation")["rotation"].is_null());
    auto r = admin_call("POST", "/v1/admin/keys/c-rot/rotate", {{"strategy", "IMMEDIATE"}});
    CHECK(r["key"] == "c-rot");
    CHECK(r["strategy"] == "IMMEDIATE");
    CHECK(r["state"] == "done");
    CHECK(r["outcome"] == "success");
    CHECK(r["to_kid"] != r["from_kid"]);
    auto status = admin_call("GET", "/v1/admin/keys/c-rot/rotation")["rotation"];
    CHECK(status["id"] == r["id"]);
    auto m = call("POST", "/v1/keys/c-rot/hmac", json{{"data", b64("x")}}, server_env().admin).json();
    CHECK(m["kid"] == r["to_kid"]);
    CHECK(m["version"] == 2);

    auto hist = admin_call("GET", "/v1/admin/rotations?key=c-rot")["rotations"];
    REQUIRE(hist.size() == 1);
    CHECK(hist[0]["id"] == r["id"]);
    bool counted = false;
    const auto stats = admin_call("GET", "/v1/admin/rotations/stats");
    for (const auto& s : stats["stats"]) {
        counted = counted || (s["strategy"] == "IMMEDIATE" && s["succeeded"].get<int>() >= 1);
    }
    CHECK(counted);

    // BLUE_GREEN stays promoted (inside its rollback window): roll it back.
    auto bg = admin_call("POST", "/v1/admin/keys/c-rot/rotate", {{"strategy", "BLUE_GREEN"}});
    CHECK(bg["state"] == "promoted");
    auto rb = admin_call("POST", "/v1/admin/keys/c-rot/rollback", json::object());
    CHECK(rb["id"] == bg["id"]);
    CHECK(rb["outcome"] == "rolled_back");
    CHECK(call("POST", "/v1/keys/c-rot/hmac", json{{"data", b64("x")}}, server_env().admin).json()["kid"] ==
          r["to_kid"]);
    CHECK(admin_call("GET", "/v1/admin/rotations?key=c-rot")["rotations"].size() == 2);

    // A token key's successor is handed out once, in the answer; it verifies.
    issue_token({{"name", "c-rot-token"}, {"scopes", {"read_only"}}});
    auto tr = admin_call("POST", "/v1/admin/keys/c-rot-token/rotate", {{"strategy", "IMMEDIATE"}});
    REQUIRE(tr.contains("token"));
    auto tv = call("POST", "/v1/tokens/verify", json{{"token", tr["token"]}}).json();
    CHECK(tv["code"] == "VALID");
    CHECK(tv["key"]["kid"] == tr["to_kid"]);

    const auto& a = server_env().admin;
    check_error(call("POST", "/v1/admin/keys/c-rot/rotate", json{{"strategy", 5}}, a), 400, "BAD_TYPE");
    check_error(call("POST", "/v1/admin/keys/c-rot/rollback", json::object(), a), 409, "NOT_PERMITTED");
    check_error(call("POST", "/v1/admin/keys/c-rot/rollback", json{{"to", "v1"}}, a), 400, "UNKNOWN_FIELD");
    check_error(call("POST", "/v1/admin/keys/c-nothing/rotate", json::object(), a), 404, "KEY_NOT_FOUND");
    check_error(call_get("/v1/admin/keys/c-nothing/rotation", a), 404, "KEY_NOT_FOUND");
}

TEST_CASE("policy reload") {
    CHECK(admin_call("POST", "/v1/admin/policies/reload", json::object()) == json{{"policies", 0}});
    check_error(call_get("/v1/admin/policies/reload", server_env().admin), 404, "NOT_FOUND");
}

TEST_CASE("audit query: filters, and paging with after/limit adds up to the whole") {
    const auto& w = world();
    admin_call("POST", "/v1/admin/keys", {{"name", "c-aud"}, {"type", "hmac"}}, 201);
    for (int i = 0; i < 5; ++i) {
        REQUIRE(call("POST", "/v1/keys/c-aud/hmac", json{{"data", b64("x")}}, w.svc).status == 200);
    }
    admin_call("POST", "/v1/admin/keys/c-aud/suspend", json::object());
    auto all = admin_call("GET", "/v1/admin/audit?key=c-aud&limit=10000")["events"];
    REQUIRE(all.size() >= 7);  // generated, 5 x key_used, state_changed
    std::int64_t prev = 0;
    int used = 0;
    for (const auto& e : all) {
        CHECK(e["key"] == "c-aud");
        CHECK(e["seq"].get<std::int64_t>() > prev);
        prev = e["seq"];
        used += e["type"] == "key_used" ? 1 : 0;
    }
    CHECK(used == 5);
    json paged = json::array();
    std::int64_t after = 0;
    for (int guard = 0; guard < 100; ++guard) {
        auto page = admin_call("GET", "/v1/admin/audit?key=c-aud&limit=2&after=" + std::to_string(after))["events"];
        CHECK(page.size() <= 2);
        if (page.empty()) break;
        for (const auto& e : page) paged.push_back(e);
        after = page.back()["seq"];
    }
    CHECK(paged == all);
    auto changed = admin_call("GET", "/v1/admin/audit?key=c-aud&event=state_changed&since=1h")["events"];
    REQUIRE(changed.size() == 1);
    CHECK(changed[0]["type"] == "state_changed");

    const auto& a = server_env().admin;
    check_error(call_get("/v1/admin/audit?event=nope", a), 400, "BAD_EVENT");
    check_error(call_get("/v1/admin/audit?since=soon", a), 400, "BAD_SINCE");
    check_error(call_get("/v1/admin/audit?limit=many", a), 400, "BAD_LIMIT");
    check_error(call_get("/v1/admin/audit?after=-1", a), 400, "BAD_AFTER");
}

TEST_CASE("usage: uses and outcomes count exactly") {
    auto t = issue_token({{"name", "c-usage"}, {"max_uses", 2}});
    for (int i = 0; i < 3; ++i) (void)call("POST", "/v1/tokens/verify", json{{"token", t["token"]}});
    (void)call("POST", "/v1/tokens/verify", json{{"token", t["token"]}, {"scope", "admin"}});
    auto u = admin_call("GET", "/v1/admin/keys/c-usage/usage");
    CHECK(u["key"] == "c-usage");
    CHECK(u["versions"][0]["uses"] == 2);
    CHECK(u["versions"][0]["max_uses"] == 2);
    CHECK(u["versions"][0]["credits_remaining"] == 0);
    CHECK(u["by_outcome"] == json{{"VALID", 2}, {"USAGE_EXCEEDED", 1}, {"INSUFFICIENT_SCOPE", 1}});
    check_error(call_get("/v1/admin/keys/c-nothing/usage", server_env().admin), 404, "KEY_NOT_FOUND");
}

TEST_CASE("PUT /v1/admin/limits") {
    auto l =
        admin_call("PUT", "/v1/admin/limits", {{"key", "c-ecdsa"}, {"limit", 50}, {"period_ms", 1000}, {"burst", 60}});
    CHECK(l == json{{"limit", 50}, {"period_ms", 1000}, {"burst", 60}});
    admin_call("PUT", "/v1/admin/limits", {{"key", "c-ecdsa"}, {"limit", 1000}, {"period_ms", 1000}, {"burst", 1000}});
    check_error(call("PUT", "/v1/admin/limits", json{{"limit", 5}, {"period_ms", "1s"}}, server_env().admin), 400,
                "BAD_TYPE");
}
