// API tokens end to end against a real (fresh, private) SoftHSM token, the
// SQLite store and the audit log. Runs under tests/with-token.sh.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/audit/verify.hpp"
#include "core/clock.hpp"
#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/key_service.hpp"
#include "core/root_keys.hpp"
#include "core/store/store.hpp"
#include "core/tokens/format.hpp"
#include "core/tokens/token_service.hpp"
#include "core/tokens/usage.hpp"
#include "token/token.hpp"

using namespace kw::core;
using kw::core::tokens::IssueRequest;
using kw::core::tokens::TokenService;
using kw::core::tokens::Verification;
using kw::core::tokens::VerifyCode;

namespace {

constexpr UnixTime kStart = 1'800'000'000;

std::string env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr) FAIL("environment variable " << name << " is not set: run under tests/with-token.sh");
    return v;
}

std::string fresh_db(const std::string& name) {
    return env("KW_TEST_DIR") + "/api_" + name + ".db";
}

std::unique_ptr<kw::token::Token> open_token() {
    kw::token::TokenConfig tc;
    tc.module_path = env("KEYWARDEN_HSM_MODULE");
    tc.selector.label = env("KEYWARDEN_TOKEN_LABEL");
    tc.sessions = 4;
    auto t = std::make_unique<kw::token::Token>(tc);
    t->login(kw::token::SecretString(env("KEYWARDEN_PIN")));
    return t;
}

// Everything a token verification touches, wired the way hsm-keytool's
// Context wires it, and torn down in the same order.
struct Stack {
    FakeClock& clock;
    std::string path;
    std::unique_ptr<kw::token::Token> token;
    std::unique_ptr<Store> store;
    RootKeys roots;
    std::unique_ptr<audit::SqliteSink> sink;
    std::unique_ptr<audit::Keys> audit_keys;
    std::unique_ptr<audit::Log> log;
    std::unique_ptr<KeyService> keys;
    std::unique_ptr<TokenService> tokens;

    Stack(FakeClock& c, std::string p) : clock(c), path(std::move(p)) { open(); }
    ~Stack() { close(); }

    void open() {
        token = open_token();
        (void)init_root_keys(*token);  // the token is fresh: creates the root keys once
        roots = load_root_keys(*token);
        store = open_store("sqlite:" + path);
        sink = std::make_unique<audit::SqliteSink>(path, audit::Durability::process);
        audit_keys = std::make_unique<audit::Keys>(*token, roots);
        log = std::make_unique<audit::Log>(*sink, *audit_keys, clock);
        keys = std::make_unique<KeyService>(*token, *store, roots, clock, *log, "test:api_token");
        tokens = std::make_unique<TokenService>(*keys);
    }
    void close() {
        tokens.reset();
        keys.reset();
        log.reset();
        audit_keys.reset();
        sink.reset();
        store.reset();
        token.reset();
    }
    std::uint64_t audit_head() {
        auto e = sink->last_event();
        return e ? e->seq : 0;
    }
};

std::string body_of(std::string_view token) {
    auto p = tokens::parse_token(token);
    REQUIRE(p);
    return std::string(p->body);
}

// Verifies and checks the audit trail of that one verification: MALFORMED
// writes nothing; anything else writes exactly one event (key_used for
// VALID, verify_failed otherwise) whose outcome is the code and whose fields
// never hold the token or its body.
Verification verify_audited(Stack& s, std::string_view token, VerifyCode expected,
                            std::optional<std::string_view> scope = {}) {
    const std::uint64_t before = s.audit_head();
    Verification v = s.tokens->verify(token, scope);
    CHECK_MESSAGE(v.code == expected, "got ", tokens::to_string(v.code), " expected ", tokens::to_string(expected));
    audit::Query q;
    q.after_seq = before;
    auto events = s.sink->query(q);
    if (expected == VerifyCode::MALFORMED) {
        CHECK(events.empty());
        return v;
    }
    REQUIRE(events.size() == 1);
    const auto& e = events.front();
    CHECK(e.operation == "verify_token");
    CHECK(e.outcome == tokens::to_string(v.code));
    CHECK(e.type == (v.code == VerifyCode::VALID ? audit::EventType::key_used : audit::EventType::verify_failed));
    CHECK(e.actor == "test:api_token");
    CHECK(e.kid == v.kid);
    CHECK(e.key == v.name);
    const std::string body = tokens::parse_token(token) ? std::string(tokens::parse_token(token)->body) : "";
    for (const std::string* field : {&e.actor, &e.key, &e.kid, &e.operation, &e.outcome, &e.details}) {
        CHECK(field->find(token) == std::string::npos);
        if (!body.empty()) CHECK(field->find(body) == std::string::npos);
    }
    auto details = nlohmann::json::parse(e.details);
    if (v.code == VerifyCode::NOT_FOUND) {
        // An unknown token is named by a pseudonym (16-byte HMAC under the audit key, hex).
        REQUIRE(details.contains("token"));
        CHECK(details["token"].get<std::string>().size() == 32);
    } else {
        // A found token is named by its kid; nothing derived from the token is logged.
        CHECK_FALSE(details.contains("token"));
        CHECK_FALSE(e.kid.empty());
    }
    return v;
}

// "table.column" of every cell of `table` that contains `needle` (text or blob).
std::vector<std::string> cells_containing(sqlite3* db, const std::string& table, std::string_view needle,
                                          int* rows_out = nullptr) {
    std::vector<std::string> hits;
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, ("SELECT * FROM " + table).c_str(), -1, &st, nullptr) == SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        ++rows;
        for (int c = 0; c < sqlite3_column_count(st); ++c) {
            const int type = sqlite3_column_type(st, c);
            if (type != SQLITE_TEXT && type != SQLITE_BLOB) continue;
            const void* p = sqlite3_column_blob(st, c);
            const int n = sqlite3_column_bytes(st, c);
            std::string_view cell(static_cast<const char*>(p), static_cast<std::size_t>(n));
            if (cell.find(needle) != std::string_view::npos) hits.push_back(table + "." + sqlite3_column_name(st, c));
        }
    }
    sqlite3_finalize(st);
    if (rows_out != nullptr) *rows_out = rows;
    return hits;
}

std::string read_file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string well_formed_never_issued() {
    std::vector<std::uint8_t> r(tokens::kRandomBytes);
    for (std::size_t i = 0; i < r.size(); ++i) r[i] = static_cast<std::uint8_t>(0xa0 + i);
    return tokens::format_token("kw_live", r);
}

}  // namespace

TEST_CASE("issue then verify: VALID with the key's facts; the store keeps only a 32-byte digest") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("issue"));

    IssueRequest r;
    r.name = "ci-deploy";
    r.scopes = {"sign:payments-*", "read_only"};
    r.expires_in = 86400;
    r.owner = "team-ci";
    auto issued = s.tokens->issue(r);
    const std::string token(issued.token.view());
    REQUIRE(tokens::parse_token(token));
    CHECK(token.rfind("kw_live_", 0) == 0);
    CHECK(issued.display == tokens::display_form(token));
    REQUIRE(issued.key.versions.size() == 1);
    const std::string kid = issued.key.versions.front().kid;
    CHECK(issued.key.type == KeyType::api_token);
    CHECK(issued.key.expires_at == kStart + 86400);

    auto v = verify_audited(s, token, VerifyCode::VALID);
    CHECK(v.name == "ci-deploy");
    CHECK(v.kid == kid);
    CHECK(v.key_id == issued.key.id);
    CHECK(v.scopes == std::vector<std::string>{"sign:payments-*", "read_only"});
    REQUIRE(v.expires_at);
    CHECK(*v.expires_at == kStart + 86400);
    CHECK_FALSE(v.remaining_uses);  // unlimited
    CHECK(verify_audited(s, token, VerifyCode::VALID, "sign:payments-eu").code == VerifyCode::VALID);

    // The token record: a 32-byte HMAC digest under the current pepper.
    auto rec = s.store->token_record(kid);
    REQUIRE(rec);
    CHECK(rec->digest.size() == 32);
    CHECK(rec->pepper_version == s.roots.current_pepper());
    CHECK(rec->display == issued.display);
    CHECK(rec->prefix == "kw_live");
    CHECK(rec->uses == 2);

    // No column of any table holds the token or its body.
    const std::string body = body_of(token);
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(s.path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    for (const std::string table : {"api_tokens", "keys", "key_versions", "audit_events"}) {
        CAPTURE(table);
        int rows = 0;
        CHECK(cells_containing(db, table, token, &rows).empty());
        CHECK(rows > 0);  // the check looked at something
        CHECK(cells_containing(db, table, body).empty());
        // ...and not even a third of the body (display keeps 6 characters).
        CHECK(cells_containing(db, table, body.substr(tokens::kDisplayChars, 11)).empty());
    }
    // The test itself can find what is there: the display form is stored.
    CHECK_FALSE(cells_containing(db, "api_tokens", issued.display).empty());
    sqlite3_close(db);

    // Nor do the raw database files (main file and WAL).
    for (const auto& f : {s.path, s.path + "-wal"}) {
        const std::string raw = read_file_bytes(f);
        CHECK(raw.find(token) == std::string::npos);
        CHECK(raw.find(body) == std::string::npos);
    }
}

TEST_CASE("every verification code is reached by a real scenario") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("codes"));

    SUBCASE("NOT_FOUND: well-formed but never issued") {
        (void)s.tokens->issue(IssueRequest{.name = "other"});
        auto v = verify_audited(s, well_formed_never_issued(), VerifyCode::NOT_FOUND);
        CHECK(v.kid.empty());
        CHECK(v.name.empty());
    }
    SUBCASE("EXPIRED once the clock passes expires_in") {
        auto issued = s.tokens->issue(IssueRequest{.name = "short", .expires_in = 60});
        const std::string t(issued.token.view());
        verify_audited(s, t, VerifyCode::VALID);
        clock.advance(59);
        verify_audited(s, t, VerifyCode::VALID);
        clock.advance(1);
        auto v = verify_audited(s, t, VerifyCode::EXPIRED);
        CHECK(v.name == "short");
        CHECK(v.expires_at == kStart + 60);
        clock.advance(100000);
        verify_audited(s, t, VerifyCode::EXPIRED);
    }
    SUBCASE("REVOKED after KeyService::revoke") {
        auto issued = s.tokens->issue(IssueRequest{.name = "to-revoke"});
        const std::string t(issued.token.view());
        verify_audited(s, t, VerifyCode::VALID);
        s.keys->revoke("to-revoke", "leaked in a log");
        verify_audited(s, t, VerifyCode::REVOKED);
        // Revocation wins over a scope problem and over expiry.
        verify_audited(s, t, VerifyCode::REVOKED, "admin");
    }
    SUBCASE("DISABLED while suspended, VALID again after resume") {
        auto issued = s.tokens->issue(IssueRequest{.name = "pausable", .max_uses = 10});
        const std::string t(issued.token.view());
        verify_audited(s, t, VerifyCode::VALID);
        auto changed = s.keys->apply("pausable", LifecycleOp::suspend, "incident");
        CHECK(changed.size() == 1);
        verify_audited(s, t, VerifyCode::DISABLED);
        verify_audited(s, t, VerifyCode::DISABLED);
        // A refused verification does not use the token up.
        CHECK(s.store->token_record(issued.key.versions.front().kid)->uses == 1);
        (void)s.keys->apply("pausable", LifecycleOp::resume);
        auto v = verify_audited(s, t, VerifyCode::VALID);
        CHECK(v.remaining_uses == 8);
    }
    SUBCASE("USAGE_EXCEEDED after max_uses, remaining_uses counts down") {
        auto issued = s.tokens->issue(IssueRequest{.name = "twice", .max_uses = 2});
        const std::string t(issued.token.view());
        auto v1 = verify_audited(s, t, VerifyCode::VALID);
        CHECK(v1.remaining_uses == 1);
        auto v2 = verify_audited(s, t, VerifyCode::VALID);
        CHECK(v2.remaining_uses == 0);
        auto v3 = verify_audited(s, t, VerifyCode::USAGE_EXCEEDED);
        CHECK(v3.remaining_uses == 0);
        verify_audited(s, t, VerifyCode::USAGE_EXCEEDED);
        auto rec = s.store->token_record(issued.key.versions.front().kid);
        REQUIRE(rec);
        CHECK(rec->uses == 2);
        CHECK(rec->max_uses == 2);
        CHECK(rec->last_used_at == kStart);
    }
    SUBCASE("INSUFFICIENT_SCOPE when the grant does not cover the required scope") {
        auto issued =
            s.tokens->issue(IssueRequest{.name = "reader", .scopes = {"read_only", "sign:payments-*"}, .max_uses = 5});
        const std::string t(issued.token.view());
        verify_audited(s, t, VerifyCode::INSUFFICIENT_SCOPE, "read_write");
        verify_audited(s, t, VerifyCode::INSUFFICIENT_SCOPE, "sign:billing");
        verify_audited(s, t, VerifyCode::INSUFFICIENT_SCOPE, "admin");
        // Refusals for scope do not count as uses.
        CHECK(s.store->token_record(issued.key.versions.front().kid)->uses == 0);
        auto v = verify_audited(s, t, VerifyCode::VALID, "read_only");
        CHECK(v.remaining_uses == 4);
        verify_audited(s, t, VerifyCode::VALID, "sign:payments-eu");
        verify_audited(s, t, VerifyCode::VALID);  // no scope required
    }
    SUBCASE("RATE_LIMITED when the gate refuses; a refused request spends no use") {
        auto issued = s.tokens->issue(IssueRequest{.name = "gated", .scopes = {"read_only"}, .max_uses = 2});
        const std::string t(issued.token.view());
        int gate_calls = 0;
        std::string seen_name;
        auto refuse = [&](const Verification& v) {
            ++gate_calls;
            seen_name = v.name;
            return false;
        };
        const std::uint64_t before = s.audit_head();
        auto v = s.tokens->verify(t, "read_only", refuse);
        CHECK(v.code == VerifyCode::RATE_LIMITED);
        CHECK(gate_calls == 1);
        CHECK(seen_name == "gated");
        CHECK(s.store->token_record(issued.key.versions.front().kid)->uses == 0);
        // The gate's owner audits its refusals (keywardend samples them,
        // server/rate_limited.cpp): the token service writes nothing for one.
        CHECK(s.audit_head() == before);
        // The gate runs only after the other checks passed.
        (void)s.tokens->verify(t, "read_write", refuse);
        CHECK(gate_calls == 1);
        // An accepting gate changes nothing.
        auto ok = s.tokens->verify(t, "read_only", [](const Verification&) { return true; });
        CHECK(ok.code == VerifyCode::VALID);
        CHECK(ok.remaining_uses == 1);
    }
    SUBCASE("MALFORMED: typo, garbage, empty") {
        auto issued = s.tokens->issue(IssueRequest{.name = "typo"});
        std::string t(issued.token.view());
        t[t.size() / 2] = t[t.size() / 2] == 'a' ? 'b' : 'a';
        auto v = verify_audited(s, t, VerifyCode::MALFORMED);
        CHECK(v.kid.empty());
        verify_audited(s, "", VerifyCode::MALFORMED);
        verify_audited(s, "Bearer xyz", VerifyCode::MALFORMED);
        verify_audited(s, std::string(issued.token.view()) + " ", VerifyCode::MALFORMED);
    }
}

TEST_CASE("MALFORMED costs no HSM call and no store or audit write") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("malformed"));
    auto issued = s.tokens->issue(IssueRequest{.name = "m", .max_uses = 3});
    const std::string good(issued.token.view());
    const std::string kid = issued.key.versions.front().kid;

    std::string typo = good;
    typo[10] = typo[10] == 'Q' ? 'R' : 'Q';
    const std::vector<std::string> garbage{
        typo, "", "kw_live_", "x", std::string(5000, 'A'), good.substr(1), "KW_LIVE" + good.substr(7)};

    const std::uint64_t leases = s.token->session_leases();
    const std::uint64_t head = s.audit_head();
    for (const auto& g : garbage) {
        CAPTURE(g);
        CHECK(s.tokens->verify(g).code == VerifyCode::MALFORMED);
        CHECK(s.tokens->verify(g, "read_only").code == VerifyCode::MALFORMED);
    }
    CHECK(s.token->session_leases() == leases);
    CHECK(s.audit_head() == head);
    CHECK(s.store->token_record(kid)->uses == 0);

    // The counters do move for a well-formed token, so the checks above can fail.
    CHECK(s.tokens->verify(well_formed_never_issued()).code == VerifyCode::NOT_FOUND);
    CHECK(s.token->session_leases() > leases);
    CHECK(s.audit_head() == head + 1);
}

TEST_CASE("provisioning tokens default to one use and one hour") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("provisioning"));

    auto a = s.tokens->issue(IssueRequest{.name = "enrol-a", .type = KeyType::provisioning, .prefix = "kw_prov"});
    CHECK(a.key.type == KeyType::provisioning);
    CHECK(a.key.expires_at == kStart + 3600);
    auto rec = s.store->token_record(a.key.versions.front().kid);
    REQUIRE(rec);
    CHECK(rec->max_uses == 1);
    const std::string ta(a.token.view());
    CHECK(ta.rfind("kw_prov_", 0) == 0);
    auto v = verify_audited(s, ta, VerifyCode::VALID);
    CHECK(v.remaining_uses == 0);
    CHECK(v.expires_at == kStart + 3600);
    verify_audited(s, ta, VerifyCode::USAGE_EXCEEDED);

    auto b = s.tokens->issue(IssueRequest{.name = "enrol-b", .type = KeyType::provisioning});
    const std::string tb(b.token.view());
    clock.advance(3599);
    // (not verified yet: the one use is kept for after the hour)
    clock.advance(1);
    verify_audited(s, tb, VerifyCode::EXPIRED);
    CHECK(s.store->token_record(b.key.versions.front().kid)->uses == 0);

    // Explicit values win over the defaults.
    auto c = s.tokens->issue(
        IssueRequest{.name = "enrol-c", .type = KeyType::provisioning, .expires_in = 60, .max_uses = 3});
    CHECK(c.key.expires_at == clock.now() + 60);
    CHECK(s.store->token_record(c.key.versions.front().kid)->max_uses == 3);

    // An api_token has no such defaults.
    auto d = s.tokens->issue(IssueRequest{.name = "plain"});
    CHECK_FALSE(d.key.expires_at);
    CHECK_FALSE(s.store->token_record(d.key.versions.front().kid)->max_uses);

    // Bad requests.
    CHECK_THROWS_AS(s.tokens->issue(IssueRequest{.name = "plain"}), Error);
    CHECK_THROWS_AS(s.tokens->issue(IssueRequest{.name = "bad-prefix", .prefix = "KW"}), Error);
    CHECK_THROWS_AS(s.tokens->issue(IssueRequest{.name = "bad-uses", .max_uses = 0}), Error);
    CHECK_THROWS_AS(s.tokens->issue(IssueRequest{.name = "bad-expiry", .expires_in = 0}), Error);
    CHECK_THROWS_AS(s.tokens->issue(IssueRequest{.name = "bad-type", .type = KeyType::hmac}), Error);
}

TEST_CASE("a token verifies after a restart (digest lookup, nothing cached)") {
    FakeClock clock(kStart);
    const std::string path = fresh_db("restart");
    std::string token;
    std::string kid;
    {
        Stack s(clock, path);
        auto issued = s.tokens->issue(IssueRequest{.name = "survivor", .scopes = {"read_only"}, .max_uses = 3});
        token = std::string(issued.token.view());
        kid = issued.key.versions.front().kid;
        verify_audited(s, token, VerifyCode::VALID);
    }  // service, log, sink, store, token: all gone
    {
        Stack s(clock, path);
        auto v = verify_audited(s, token, VerifyCode::VALID, "read_only");
        CHECK(v.kid == kid);
        CHECK(v.name == "survivor");
        CHECK(v.remaining_uses == 1);
        // The audit chain continued across the restart.
        audit::VerifyOptions o;
        o.public_key = s.audit_keys->public_key();
        o.check_mac = [&](const std::string& h, const std::string& m) { return s.audit_keys->check_mac(h, m); };
        audit::Verifier ver(s.sink->checkpoints(), o);
        s.sink->for_each([&](const audit::Event& e) { return ver.feed(e); });
        auto report = ver.finish();
        CHECK_MESSAGE(report.ok, report.message);
        CHECK(report.events == s.audit_head());
    }
}

TEST_CASE("credits: a daily refill restores refill_amount at 00:00 UTC; a cost spends several uses or none") {
    FakeClock clock(kStart);  // 2027-01-15T08:00:00Z
    Stack s(clock, fresh_db("refill"));
    auto issued = s.tokens->issue(
        IssueRequest{.name = "daily", .max_uses = 5, .refill = RefillSchedule::parse("daily"), .refill_amount = 3});
    const std::string t(issued.token.view());
    const std::string kid = issued.key.versions.front().kid;
    constexpr UnixTime kMidnight = 1'800'057'600;  // 2027-01-16T00:00:00Z
    // The first allowance is max_uses; a cost takes several uses at once.
    auto v = s.tokens->verify(t, std::nullopt, {}, 4);
    CHECK(v.code == VerifyCode::VALID);
    CHECK(v.remaining_uses == 1);
    CHECK(v.next_refill == kMidnight);
    // A cost larger than what is left spends nothing.
    CHECK(s.tokens->verify(t, std::nullopt, {}, 2).code == VerifyCode::USAGE_EXCEEDED);
    CHECK(s.store->token_record(kid)->uses == 4);
    CHECK(s.tokens->verify(t).remaining_uses == 0);
    CHECK(s.tokens->verify(t).code == VerifyCode::USAGE_EXCEEDED);
    // One second before midnight: still exhausted.
    clock.set(kMidnight - 1);
    CHECK(s.tokens->verify(t).code == VerifyCode::USAGE_EXCEEDED);
    // At midnight the allowance is refill_amount (3), not max_uses.
    clock.set(kMidnight + 60);
    auto r1 = s.tokens->verify(t);
    CHECK(r1.code == VerifyCode::VALID);
    CHECK(r1.remaining_uses == 2);
    CHECK(r1.next_refill == kMidnight + 86400);
    CHECK(s.tokens->verify(t, std::nullopt, {}, 2).remaining_uses == 0);
    CHECK(s.tokens->verify(t).code == VerifyCode::USAGE_EXCEEDED);
    auto rec = s.store->token_record(kid);
    REQUIRE(rec);
    CHECK(rec->refilled);
    CHECK(rec->next_refill_at == kMidnight + 86400);
    CHECK(rec->refill->to_string() == "daily");
    // A missed day refills once, to the amount, with the next midnight after now.
    clock.set(kMidnight + 3 * 86400 + 5);
    auto later = s.tokens->verify(t);
    CHECK(later.remaining_uses == 2);
    CHECK(later.next_refill == kMidnight + 4 * 86400);
    // Bad requests are refused at issue.
    CHECK_THROWS_AS(s.tokens->issue(IssueRequest{.name = "x1", .refill = RefillSchedule::parse("daily")}), Error);
    CHECK_THROWS_AS(s.tokens->issue(IssueRequest{.name = "x2", .max_uses = 2, .refill_amount = 3}), Error);
}

TEST_CASE("concurrent verifications never exceed max_uses") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("concurrency"));
    auto issued = s.tokens->issue(IssueRequest{.name = "five", .type = KeyType::provisioning, .max_uses = 5});
    const std::string token(issued.token.view());

    constexpr int kThreads = 8;
    constexpr int kEach = 3;
    std::atomic<int> ready{0};
    std::atomic<int> valid{0}, exceeded{0}, other{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&] {
            ready.fetch_add(1);
            while (ready.load() < kThreads) std::this_thread::yield();
            for (int k = 0; k < kEach; ++k) {
                auto v = s.tokens->verify(token);
                if (v.code == VerifyCode::VALID) {
                    valid.fetch_add(1);
                } else if (v.code == VerifyCode::USAGE_EXCEEDED) {
                    exceeded.fetch_add(1);
                } else {
                    other.fetch_add(1);
                }
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(valid.load() == 5);
    CHECK(exceeded.load() == kThreads * kEach - 5);
    CHECK(other.load() == 0);
    CHECK(s.store->token_record(issued.key.versions.front().kid)->uses == 5);

    // One audit event per verification, with the right outcomes.
    audit::Query q;
    q.key = "five";
    int ok_events = 0, exceeded_events = 0;
    for (const auto& e : s.sink->query(q)) {
        if (e.operation != "verify_token") continue;
        if (e.outcome == "VALID") ++ok_events;
        if (e.outcome == "USAGE_EXCEEDED") ++exceeded_events;
    }
    CHECK(ok_events == 5);
    CHECK(exceeded_events == kThreads * kEach - 5);
}

TEST_CASE("usage accumulator: unlimited tokens are counted in memory and flushed in one batch") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("usage"));
    // A long interval, so only the explicit flushes below write.
    auto usage = std::make_unique<tokens::UsageAccumulator>(*s.store, std::chrono::hours(1));
    TokenService counted(*s.keys, usage.get());
    auto unlimited = s.tokens->issue(IssueRequest{.name = "unlimited"});
    auto limited = s.tokens->issue(IssueRequest{.name = "limited", .max_uses = 2});
    const std::string u(unlimited.token.view());
    const std::string l(limited.token.view());
    const std::string ukid = unlimited.key.versions.front().kid;
    const std::string lkid = limited.key.versions.front().kid;

    for (int i = 0; i < 3; ++i) CHECK(counted.verify(u).code == VerifyCode::VALID);
    clock.advance(5);
    CHECK(counted.verify(u).code == VerifyCode::VALID);
    // Not in the store yet, but record() merges what is pending.
    CHECK(s.store->token_record(ukid)->uses == 0);
    CHECK_FALSE(s.store->token_record(ukid)->last_used_at);
    CHECK(usage->record(ukid)->uses == 4);
    CHECK(usage->record(ukid)->last_used_at == kStart + 5);
    // Credits still go through the store on every use: never overspent.
    CHECK(counted.verify(l).code == VerifyCode::VALID);
    CHECK(s.store->token_record(lkid)->uses == 1);
    CHECK(counted.verify(l).code == VerifyCode::VALID);
    CHECK(counted.verify(l).code == VerifyCode::USAGE_EXCEEDED);
    CHECK(s.store->token_record(lkid)->uses == 2);

    usage->flush();
    CHECK(s.store->token_record(ukid)->uses == 4);
    CHECK(s.store->token_record(ukid)->last_used_at == kStart + 5);
    CHECK(usage->record(ukid)->uses == 4);  // nothing counted twice after the flush
    // More uses, then the accumulator is destroyed (keywardend's shutdown): flushed.
    CHECK(counted.verify(u).code == VerifyCode::VALID);
    CHECK(counted.verify(u).code == VerifyCode::VALID);
    usage.reset();
    CHECK(s.store->token_record(ukid)->uses == 6);
}

TEST_CASE("usage accumulator: the flusher thread writes every interval") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("usage_interval"));
    tokens::UsageAccumulator usage(*s.store, std::chrono::milliseconds(50));
    TokenService counted(*s.keys, &usage);
    auto issued = s.tokens->issue(IssueRequest{.name = "ticking"});
    const std::string t(issued.token.view());
    const std::string kid = issued.key.versions.front().kid;
    for (int i = 0; i < 5; ++i) CHECK(counted.verify(t).code == VerifyCode::VALID);
    std::int64_t stored = 0;
    for (int i = 0; i < 100 && stored != 5; ++i) {  // up to 5 s on a loaded machine
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        stored = s.store->token_record(kid)->uses;
    }
    CHECK(stored == 5);
    CHECK(usage.failed_flushes() == 0);
}

TEST_CASE("pepper rotation: old tokens still verify and are re-digested lazily") {
    FakeClock clock(kStart);
    const std::string path = fresh_db("pepper");
    std::string token;
    std::string kid;
    std::vector<std::uint8_t> old_digest;
    int old_pepper = 0;
    int new_pepper = 0;
    {
        Stack s(clock, path);
        auto issued = s.tokens->issue(IssueRequest{.name = "long-lived", .max_uses = 10});
        token = std::string(issued.token.view());
        kid = issued.key.versions.front().kid;
        auto rec = s.store->token_record(kid);
        REQUIRE(rec);
        old_digest = rec->digest;
        old_pepper = rec->pepper_version;
        CHECK(old_pepper == s.roots.current_pepper());
        new_pepper = add_pepper(*s.token, s.roots);
        CHECK(new_pepper == old_pepper + 1);
    }
    Stack s(clock, path);  // reloads the root keys: the new pepper is current
    REQUIRE(s.roots.current_pepper() == new_pepper);
    REQUIRE(s.roots.peppers.size() >= 2);
    CHECK(s.store->token_record(kid)->pepper_version == old_pepper);  // nothing happened yet

    auto v = verify_audited(s, token, VerifyCode::VALID);
    CHECK(v.kid == kid);
    auto rec = s.store->token_record(kid);
    REQUIRE(rec);
    CHECK(rec->pepper_version == new_pepper);
    CHECK(rec->digest.size() == 32);
    CHECK(rec->digest != old_digest);
    CHECK(rec->uses == 1);

    auto v2 = verify_audited(s, token, VerifyCode::VALID);
    CHECK(v2.remaining_uses == 8);
    CHECK(s.store->token_record(kid)->pepper_version == new_pepper);

    // A token issued now is digested under the new pepper from the start.
    auto fresh = s.tokens->issue(IssueRequest{.name = "after-rotation"});
    CHECK(s.store->token_record(fresh.key.versions.front().kid)->pepper_version == new_pepper);
    verify_audited(s, fresh.token.view(), VerifyCode::VALID);
    // And a never-issued token is still NOT_FOUND with two peppers to try.
    verify_audited(s, well_formed_never_issued(), VerifyCode::NOT_FOUND);
}
