// The audit log against a real (fresh, private) SoftHSM token and the SQLite
// sink: group commit, chain verification, tamper detection (online and
// offline) and failing closed. Runs under tests/with-token.sh.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/audit/event.hpp"
#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/spool.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/audit/verify.hpp"
#include "core/clock.hpp"
#include "core/crypto/public_key.hpp"
#include "core/error.hpp"
#include "core/key_service.hpp"
#include "core/root_keys.hpp"
#include "core/store/store.hpp"
#include "token/token.hpp"

using namespace kw::core;
namespace audit = kw::core::audit;

namespace {

constexpr UnixTime kStart = 1'800'000'000;

std::string env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr) FAIL("environment variable " << name << " is not set: run under tests/with-token.sh");
    return v;
}

std::string fresh_db(const std::string& name) {
    static std::atomic<int> n{0};
    return env("KW_TEST_DIR") + "/audit_" + name + "_" + std::to_string(n.fetch_add(1)) + ".db";
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

audit::LogOptions every_ten() {
    audit::LogOptions o;
    o.checkpoint_every = 10;
    return o;
}

struct AuditStack {
    FakeClock clock{kStart};
    std::string path;
    std::unique_ptr<kw::token::Token> token;
    RootKeys roots;
    std::unique_ptr<audit::SqliteSink> sink;
    std::unique_ptr<audit::Keys> keys;
    std::unique_ptr<audit::Log> log;

    explicit AuditStack(std::string p, audit::LogOptions o = every_ten()) : path(std::move(p)) {
        token = open_token();
        (void)init_root_keys(*token);  // fresh token: creates them once
        roots = load_root_keys(*token);
        sink = std::make_unique<audit::SqliteSink>(path, audit::Durability::process);
        keys = std::make_unique<audit::Keys>(*token, roots);
        log = std::make_unique<audit::Log>(*sink, *keys, clock, o);
    }
    ~AuditStack() {
        log.reset();
        keys.reset();
        sink.reset();
        token.reset();
    }

    std::uint64_t record(int i, const std::string& actor = "cli:alice") {
        return log->record(audit::Record{audit::EventType::key_used,
                                         actor,
                                         "key-" + std::to_string(i % 7),
                                         "kid" + std::to_string(i),
                                         "sign",
                                         "ok",
                                         {{"i", i}, {"bytes", 32}}});
    }
    void fill(int n) {
        for (int i = 1; i <= n; ++i) REQUIRE(record(i) == static_cast<std::uint64_t>(i));
    }

    audit::Report verify_online() {
        audit::VerifyOptions o;
        o.public_key = keys->public_key();
        o.check_mac = [this](const std::string& h, const std::string& m) { return keys->check_mac(h, m); };
        o.find_hash = [this](const std::string& h) { return sink->seq_of_hash(h); };
        audit::Verifier v(sink->checkpoints(), o);
        sink->for_each([&](const audit::Event& e) { return v.feed(e); });
        return v.finish();
    }

    std::vector<audit::Event> events() {
        std::vector<audit::Event> out;
        sink->for_each([&](const audit::Event& e) {
            out.push_back(e);
            return true;
        });
        return out;
    }
    audit::Event event(std::uint64_t seq) {
        audit::Query q;
        q.after_seq = seq - 1;
        q.limit = 1;
        auto r = sink->query(q);
        REQUIRE(r.size() == 1);
        REQUIRE(r.front().seq == seq);
        return r.front();
    }
};

// A second, independent connection to the store file: the attacker's.
class Raw {
public:
    explicit Raw(const std::string& path) {
        REQUIRE(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
        sqlite3_busy_timeout(db_, 5000);
    }
    ~Raw() { sqlite3_close(db_); }
    Raw(const Raw&) = delete;
    Raw& operator=(const Raw&) = delete;

    void exec(const std::string& sql) {
        char* err = nullptr;
        const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
        INFO(sql << ": " << (err ? err : ""));
        sqlite3_free(err);
        REQUIRE(rc == SQLITE_OK);
    }
    long long count(const std::string& sql) {
        sqlite3_stmt* st = nullptr;
        REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
        REQUIRE(sqlite3_step(st) == SQLITE_ROW);
        const long long v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
    }
    std::string text(const std::string& sql) {
        sqlite3_stmt* st = nullptr;
        REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
        REQUIRE(sqlite3_step(st) == SQLITE_ROW);
        std::string v(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
        sqlite3_finalize(st);
        return v;
    }
    // Writes every field of `e` into the row with seq `e.seq` (inserting if absent).
    void put(const audit::Event& e) {
        sqlite3_stmt* st = nullptr;
        REQUIRE(sqlite3_prepare_v2(db_,
                                   "INSERT OR REPLACE INTO audit_events(seq, time, type, actor, key, kid, op, outcome, "
                                   "details, prev_hash, hash, mac) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                                   -1, &st, nullptr) == SQLITE_OK);
        const std::string type(audit::to_string(e.type));
        sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(e.seq));
        sqlite3_bind_int64(st, 2, e.time);
        int i = 3;
        for (const std::string* s :
             {&type, &e.actor, &e.key, &e.kid, &e.operation, &e.outcome, &e.details, &e.prev_hash, &e.hash, &e.mac}) {
            sqlite3_bind_text(st, i++, s->c_str(), -1, SQLITE_TRANSIENT);
        }
        REQUIRE(sqlite3_step(st) == SQLITE_DONE);
        sqlite3_finalize(st);
    }

private:
    sqlite3* db_ = nullptr;
};

void check_report(const audit::Report& r, audit::Problem problem, std::uint64_t seq) {
    INFO("report: ok=" << r.ok << " problem=" << audit::to_string(r.problem) << " first_bad_seq="
                       << (r.first_bad_seq ? std::to_string(*r.first_bad_seq) : "-") << " message=" << r.message);
    CHECK_FALSE(r.ok);
    CHECK(r.problem == problem);
    REQUIRE(r.first_bad_seq);
    CHECK(*r.first_bad_seq == seq);
}

// A fresh log of `n` events, written one at a time (checkpoints at 10, 20, ...).
std::unique_ptr<AuditStack> fresh_log(const std::string& name, int n = 50) {
    auto a = std::make_unique<AuditStack>(fresh_db(name));
    a->fill(n);
    auto r = a->verify_online();
    REQUIRE_MESSAGE(r.ok, r.message);
    REQUIRE(r.events == static_cast<std::uint64_t>(n));
    REQUIRE(r.checkpoints == static_cast<std::uint64_t>(n / 10));
    return a;
}

// The export of cmd_audit.cpp, in memory: JSON lines, then parsed back.
struct Export {
    std::vector<nlohmann::json> events;
    std::vector<nlohmann::json> checkpoints;
    std::string public_key_pem;
};

Export export_log(AuditStack& a) {
    Export x;
    x.public_key_pem = spki_to_pem(a.keys->public_key());
    a.sink->for_each([&](const audit::Event& e) {
        x.events.push_back(nlohmann::json::parse(audit::to_json(e).dump()));
        return true;
    });
    for (const auto& c : a.sink->checkpoints())
        x.checkpoints.push_back(nlohmann::json::parse(audit::to_json(c).dump()));
    return x;
}

std::string other_p256_public_key_pem() {
    EVP_PKEY* k = EVP_EC_gen("P-256");
    REQUIRE(k != nullptr);
    unsigned char* der = nullptr;
    const int n = i2d_PUBKEY(k, &der);
    REQUIRE(n > 0);
    std::vector<std::uint8_t> spki(der, der + n);
    OPENSSL_free(der);
    EVP_PKEY_free(k);
    return spki_to_pem(spki);
}

audit::Report verify_offline(const Export& x) {
    audit::VerifyOptions o;
    o.public_key = pem_to_spki(x.public_key_pem);  // the public key and nothing else
    std::vector<audit::Event> events;
    std::unordered_map<std::string, std::uint64_t> by_hash;
    for (const auto& j : x.events) {
        events.push_back(audit::event_from_json(j));
        by_hash.emplace(events.back().hash, events.back().seq);
    }
    std::vector<audit::Checkpoint> cps;
    for (const auto& j : x.checkpoints) cps.push_back(audit::checkpoint_from_json(j));
    o.find_hash = [&](const std::string& h) -> std::optional<std::uint64_t> {
        auto it = by_hash.find(h);
        if (it == by_hash.end()) return std::nullopt;
        return it->second;
    };
    audit::Verifier v(std::move(cps), o);
    for (auto& e : events) {
        if (!v.feed(std::move(e))) break;
    }
    return v.finish();
}

}  // namespace

TEST_CASE("100 events from 4 threads: unique contiguous seqs, chain and checkpoints verify") {
    AuditStack a(fresh_db("threads"));
    std::mutex m;
    std::vector<std::uint64_t> seqs;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 25; ++i) {
                const std::uint64_t s = a.record(t * 100 + i, "thread:" + std::to_string(t));
                std::lock_guard lock(m);
                seqs.push_back(s);
            }
        });
    }
    for (auto& th : threads) th.join();
    std::sort(seqs.begin(), seqs.end());
    REQUIRE(seqs.size() == 100);
    for (std::size_t i = 0; i < seqs.size(); ++i) CHECK(seqs[i] == i + 1);
    CHECK(a.log->head_seq() == 100);

    auto r = a.verify_online();
    CHECK_MESSAGE(r.ok, r.message);
    CHECK(r.events == 100);
    CHECK(r.macs_checked);
    // Checkpoints are written at the end of the batch that reaches 10 events
    // past the last one; a batch holds at most one event per thread, so each
    // gap is 10..13 events.
    const auto cps = a.sink->checkpoints();
    CHECK(r.checkpoints == cps.size());
    CHECK(cps.size() >= 7);
    CHECK(cps.size() <= 10);
    std::uint64_t prev = 0;
    for (const auto& c : cps) {
        CHECK(c.seq - prev >= 10);
        CHECK(c.seq - prev <= 13);
        prev = c.seq;
    }
    CHECK(r.unsigned_tail == 100 - prev);

    // Events in the store carry what was recorded.
    std::set<std::string> actors;
    for (const auto& e : a.events()) actors.insert(e.actor);
    CHECK(actors == std::set<std::string>{"thread:0", "thread:1", "thread:2", "thread:3"});
}

TEST_CASE("one at a time, checkpoints land exactly every 10 events; by time and on demand too") {
    AuditStack a(fresh_db("sequential"));
    a.fill(100);
    auto r = a.verify_online();
    CHECK_MESSAGE(r.ok, r.message);
    CHECK(r.events == 100);
    CHECK(r.checkpoints == 10);
    CHECK(r.unsigned_tail == 0);
    const auto cps = a.sink->checkpoints();
    REQUIRE(cps.size() == 10);
    for (std::size_t i = 0; i < cps.size(); ++i) {
        CHECK(cps[i].seq == (i + 1) * 10);
        CHECK(cps[i].head_hash == a.event(cps[i].seq).hash);
        CHECK(audit::verify_checkpoint(a.keys->public_key(), cps[i]));
    }
    // Three more events: an unsigned tail of 3, until checkpoint_now().
    a.record(101);
    a.record(102);
    a.record(103);
    CHECK(a.verify_online().unsigned_tail == 3);
    a.log->checkpoint_now();
    CHECK(a.sink->checkpoints().back().seq == 103);
    CHECK(a.verify_online().unsigned_tail == 0);
    a.log->checkpoint_now();  // nothing new: no second checkpoint for 103
    CHECK(a.sink->checkpoints().size() == 11);
    // checkpoint_seconds (60 by default) of quiet time: the next event is checkpointed.
    a.clock.advance(61);
    CHECK(a.record(104) == 104);
    CHECK(a.sink->checkpoints().back().seq == 104);
    CHECK(a.verify_online().ok);
}

TEST_CASE("the chain survives a restart of the log") {
    const std::string path = fresh_db("restart");
    {
        AuditStack a(path);
        a.fill(15);
    }
    AuditStack a(path);
    CHECK(a.log->head_seq() == 15);
    CHECK(a.record(16) == 16);
    CHECK(a.event(16).prev_hash == a.event(15).hash);
    auto r = a.verify_online();
    CHECK_MESSAGE(r.ok, r.message);
    CHECK(r.events == 16);
}

TEST_CASE("tampering with the SQLite file is found, with the first bad seq and the problem") {
    SUBCASE("an edited field") {
        auto a = fresh_log("edit");
        Raw(a->path).exec("UPDATE audit_events SET actor = 'mallory' WHERE seq = 17");
        check_report(a->verify_online(), audit::Problem::edited, 17);
    }
    SUBCASE("an edited outcome deep in the details") {
        auto a = fresh_log("edit_details");
        Raw(a->path).exec("UPDATE audit_events SET details = '{\"bytes\":33,\"i\":8}' WHERE seq = 8");
        check_report(a->verify_online(), audit::Problem::edited, 8);
    }
    SUBCASE("a deleted row") {
        auto a = fresh_log("delete");
        Raw(a->path).exec("DELETE FROM audit_events WHERE seq = 23");
        check_report(a->verify_online(), audit::Problem::deleted, 23);
    }
    SUBCASE("a deleted first row") {
        auto a = fresh_log("delete_first");
        Raw(a->path).exec("DELETE FROM audit_events WHERE seq = 1");
        check_report(a->verify_online(), audit::Problem::deleted, 1);
    }
    SUBCASE("an inserted, correctly hashed and linked forgery (its MAC is not the token's)") {
        auto a = fresh_log("insert");
        const audit::Event e29 = a->event(29);
        Raw raw(a->path);
        // Make room at 30: shift 30..50 up by one (via negatives, as seq is the primary key).
        raw.exec("UPDATE audit_events SET seq = -seq WHERE seq >= 30");
        raw.exec("UPDATE audit_events SET seq = 1 - seq WHERE seq < 0");
        REQUIRE(raw.count("SELECT MAX(seq) FROM audit_events") == 51);
        audit::Event f;
        f.seq = 30;
        f.time = e29.time;
        f.type = audit::EventType::key_used;
        f.actor = "cli:alice";
        f.key = "payments";
        f.kid = "forged";
        f.operation = "sign";
        f.outcome = "ok";
        f.details = "{}";
        f.prev_hash = e29.hash;
        f.hash = audit::compute_hash(f);
        f.mac = std::string(64, 'a');
        raw.put(f);
        check_report(a->verify_online(), audit::Problem::inserted, 30);
    }
    SUBCASE("a forgery appended at the end is a bad MAC") {
        auto a = fresh_log("append");
        const audit::Event last = a->event(50);
        audit::Event f = last;
        f.seq = 51;
        f.actor = "cli:mallory";
        f.prev_hash = last.hash;
        f.hash = audit::compute_hash(f);
        f.mac = last.mac;  // a real MAC, of another event
        Raw(a->path).put(f);
        check_report(a->verify_online(), audit::Problem::bad_mac, 51);
    }
    SUBCASE("two rows swapped") {
        auto a = fresh_log("swap");
        Raw raw(a->path);
        raw.exec("UPDATE audit_events SET seq = -1 WHERE seq = 12");
        raw.exec("UPDATE audit_events SET seq = 12 WHERE seq = 13");
        raw.exec("UPDATE audit_events SET seq = 13 WHERE seq = -1");
        check_report(a->verify_online(), audit::Problem::reordered, 12);
    }
    SUBCASE("two distant rows swapped") {
        auto a = fresh_log("swap_far");
        Raw raw(a->path);
        raw.exec("UPDATE audit_events SET seq = -1 WHERE seq = 12");
        raw.exec("UPDATE audit_events SET seq = 12 WHERE seq = 20");
        raw.exec("UPDATE audit_events SET seq = 20 WHERE seq = -1");
        check_report(a->verify_online(), audit::Problem::reordered, 12);
    }
    SUBCASE("an event moved to the end") {
        auto a = fresh_log("move");
        Raw raw(a->path);
        // Event 5 is moved to the end: 6..50 shift down, 5 becomes 50.
        raw.exec("UPDATE audit_events SET seq = -1 WHERE seq = 5");
        raw.exec("UPDATE audit_events SET seq = -seq WHERE seq > 5");
        raw.exec("UPDATE audit_events SET seq = -seq - 1 WHERE seq < -1");
        raw.exec("UPDATE audit_events SET seq = 50 WHERE seq = -1");
        REQUIRE(raw.count("SELECT COUNT(*) FROM audit_events WHERE seq BETWEEN 1 AND 50") == 50);
        check_report(a->verify_online(), audit::Problem::reordered, 5);
    }
    SUBCASE("the tail cut off behind a checkpoint") {
        auto a = fresh_log("truncate");
        Raw raw(a->path);
        REQUIRE(raw.count("SELECT COUNT(*) FROM audit_checkpoints WHERE seq = 30") == 1);
        raw.exec("DELETE FROM audit_events WHERE seq > 25");
        check_report(a->verify_online(), audit::Problem::truncated, 26);
    }
    SUBCASE("a checkpoint signature with one hex digit flipped") {
        auto a = fresh_log("bad_sig");
        Raw raw(a->path);
        std::string sig = raw.text("SELECT signature FROM audit_checkpoints WHERE seq = 20");
        char& c = sig[sig.size() - 5];
        c = c == '0' ? '1' : '0';
        raw.exec("UPDATE audit_checkpoints SET signature = '" + sig + "' WHERE seq = 20");
        check_report(a->verify_online(), audit::Problem::bad_checkpoint, 20);
    }
    SUBCASE("a checkpoint naming another head") {
        auto a = fresh_log("bad_head");
        Raw raw(a->path);
        raw.exec(
            "UPDATE audit_checkpoints SET head_hash = (SELECT hash FROM audit_events WHERE seq = 29) WHERE seq = 30");
        check_report(a->verify_online(), audit::Problem::bad_checkpoint, 30);
    }
    SUBCASE("a forged edit with every following hash and link recomputed") {
        auto a = fresh_log("rehash");
        auto events = a->events();
        REQUIRE(events.size() == 50);
        Raw raw(a->path);
        std::string prev = events[38].hash;                 // seq 39
        for (std::size_t i = 39; i < events.size(); ++i) {  // seq 40..50
            audit::Event e = events[i];
            if (e.seq == 40) e.actor = "cli:mallory";
            e.prev_hash = prev;
            e.hash = audit::compute_hash(e);  // consistent chain; the MACs stay the old ones
            prev = e.hash;
            raw.put(e);
        }
        check_report(a->verify_online(), audit::Problem::bad_mac, 40);
    }
}

TEST_CASE("offline verification with the public key alone") {
    auto a = fresh_log("offline");
    Export x = export_log(*a);
    REQUIRE(x.events.size() == 50);
    REQUIRE(x.checkpoints.size() == 5);
    // Details are exported as JSON objects and still re-hash the same.
    CHECK(x.events.front()["details"].is_object());

    auto r = verify_offline(x);
    CHECK_MESSAGE(r.ok, r.message);
    CHECK_FALSE(r.macs_checked);
    CHECK(r.events == 50);
    CHECK(r.checkpoints == 5);
    CHECK(r.unsigned_tail == 0);

    SUBCASE("an edited event") {
        x.events[16]["actor"] = "mallory";  // seq 17
        check_report(verify_offline(x), audit::Problem::edited, 17);
    }
    SUBCASE("an edited detail") {
        x.events[33]["details"]["bytes"] = 64;  // seq 34
        check_report(verify_offline(x), audit::Problem::edited, 34);
    }
    SUBCASE("a dropped event") {
        x.events.erase(x.events.begin() + 22);  // seq 23
        check_report(verify_offline(x), audit::Problem::deleted, 23);
    }
    SUBCASE("a re-hashed chain is caught by the signed checkpoint") {
        std::string prev = x.events[38]["hash"];
        for (std::size_t i = 39; i < x.events.size(); ++i) {
            audit::Event e = audit::event_from_json(x.events[i]);
            if (e.seq == 40) e.actor = "cli:mallory";
            e.prev_hash = prev;
            e.hash = audit::compute_hash(e);
            prev = e.hash;
            x.events[i] = audit::to_json(e);
        }
        // Offline the MACs cannot be checked, but checkpoint 40 names the real head.
        check_report(verify_offline(x), audit::Problem::bad_checkpoint, 40);
    }
    SUBCASE("a checkpoint signed by another key") {
        // The public key of a different P-256 key: the first checkpoint fails.
        x.public_key_pem = other_p256_public_key_pem();
        check_report(verify_offline(x), audit::Problem::bad_checkpoint, 10);
    }
    SUBCASE("tampering in the database shows in a later export") {
        Raw(a->path).exec("UPDATE audit_events SET outcome = 'denied' WHERE seq = 44");
        check_report(verify_offline(export_log(*a)), audit::Problem::edited, 44);
    }
}

TEST_CASE("fail closed: no audit, no signature; no hole in the chain afterwards") {
    AuditStack a(fresh_db("fail_closed"));
    auto store = open_store("sqlite:" + a.path);
    KeyService keys(*a.token, *store, a.roots, a.clock, *a.log, "test:audit");
    (void)keys.generate(GenerateRequest{.name = "signer", .type = KeyType::hmac});
    const std::vector<std::uint8_t> data{'h', 'e', 'l', 'l', 'o'};
    const auto good = keys.sign("signer", data);
    CHECK(good.signature.size() == 32);

    Raw raw(a.path);
    const auto head = a.log->head_seq();
    REQUIRE(head > 0);
    raw.exec("CREATE TRIGGER block BEFORE INSERT ON audit_events BEGIN SELECT RAISE(FAIL, 'disk full'); END;");

    // What a refused audit write costs on its own (the writer MACs the batch
    // in the token before the insert fails)...
    const auto l0 = a.token->session_leases();
    try {
        (void)a.log->record(
            audit::Record{audit::EventType::key_used, "test", "", "", "probe", "ok", nlohmann::json::object()});
        FAIL("record() must throw while the audit store is unwritable");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::audit_failure);
        CHECK(std::string(e.what()).find("disk full") != std::string::npos);
    }
    const auto record_cost = a.token->session_leases() - l0;

    // ...and sign() refuses too: the token signs while the event commits
    // (one session more than the event alone), but the signature is never
    // returned because its event did not become durable.
    const auto l1 = a.token->session_leases();
    try {
        (void)keys.sign("signer", data);
        FAIL("sign() must throw while the audit store is unwritable");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::audit_failure);
    }
    const auto sign_cost = a.token->session_leases() - l1;
    CHECK(sign_cost == record_cost + 1);
    CHECK(sign_cost <= 3);
    CHECK(a.log->head_seq() == head);
    CHECK(raw.count("SELECT COUNT(*) FROM audit_events") == static_cast<long long>(head));

    // A working sign costs one session more than its audit event: the check above can fail.
    raw.exec("DROP TRIGGER block");
    const auto l2 = a.token->session_leases();
    const auto after = keys.sign("signer", data);
    CHECK(a.token->session_leases() - l2 == record_cost + 1);
    CHECK(after.signature == good.signature);  // HMAC: same key, same data
    CHECK(a.log->head_seq() == head + 1);
    CHECK(a.record(1) == head + 2);

    auto r = a.verify_online();
    CHECK_MESSAGE(r.ok, r.message);
    CHECK(r.events == head + 2);
    // The refused sign left no event behind.
    int signs = 0;
    for (const auto& e : a.events()) {
        if (e.key == "signer" && e.operation == "sign") ++signs;
    }
    CHECK(signs == 2);
}

TEST_CASE("group commit: 16 threads x 200 events") {
    AuditStack a(fresh_db("group"));
    constexpr int kThreads = 16;
    constexpr int kEach = 200;
    std::mutex m;
    std::vector<std::uint64_t> seqs;
    seqs.reserve(kThreads * kEach);
    std::atomic<int> errors{0};
    const auto leases = a.token->session_leases();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::vector<std::uint64_t> mine;
            for (int i = 0; i < kEach; ++i) {
                try {
                    mine.push_back(a.record(t * 1000 + i, "thread:" + std::to_string(t)));
                } catch (...) {
                    errors.fetch_add(1);
                }
            }
            CHECK(std::is_sorted(mine.begin(), mine.end()));  // one thread's events stay in order
            std::lock_guard lock(m);
            seqs.insert(seqs.end(), mine.begin(), mine.end());
        });
    }
    for (auto& th : threads) th.join();
    CHECK(errors.load() == 0);
    std::sort(seqs.begin(), seqs.end());
    REQUIRE(seqs.size() == kThreads * kEach);
    CHECK(seqs.front() == 1);
    CHECK(seqs.back() == kThreads * kEach);
    CHECK(std::adjacent_find(seqs.begin(), seqs.end()) == seqs.end());  // unique

    const auto cps = a.sink->checkpoints();
    // Each batch is one session lease for its MACs (+1 per checkpoint): fewer
    // leases than events means callers shared commits.
    const auto used = a.token->session_leases() - leases;
    MESSAGE("3200 events in about " << (used - cps.size()) << " commits, " << cps.size() << " checkpoints");
    CHECK(used - cps.size() < static_cast<std::uint64_t>(kThreads * kEach));

    std::uint64_t prev = 0;
    for (const auto& c : cps) {
        CHECK(c.seq - prev >= 10);
        CHECK(c.seq - prev <= 10 + kThreads - 1);
        prev = c.seq;
    }
    CHECK(cps.size() <= 320);
    CHECK(cps.size() >= 3200 / (10 + kThreads - 1));

    auto r = a.verify_online();
    CHECK_MESSAGE(r.ok, r.message);
    CHECK(r.events == kThreads * kEach);
    CHECK(r.checkpoints == cps.size());
}

// ---- The spool (core/audit/spool.hpp): keywardend's path for events. ----

namespace {

audit::LogOptions spooled(const std::string& path, std::chrono::milliseconds interval = std::chrono::milliseconds(2)) {
    audit::LogOptions o = every_ten();
    o.spool_store_path = path;
    o.spool = true;
    o.ingest_interval = interval;
    return o;
}

std::vector<std::string> spool_files(const std::string& path) {
    return audit::SpoolFile::list(path);
}

audit::Record probe(int i) {
    return audit::Record{audit::EventType::key_used, "test", "k", "", "probe", "ok", {{"i", i}}};
}

}  // namespace

TEST_CASE("spooled: record() returns once spooled; flush() stores; a clean close leaves no spool") {
    const std::string path = fresh_db("spool");
    // A long interval: nothing reaches the store until flush() asks.
    AuditStack a(path, spooled(path, std::chrono::milliseconds(1000)));
    const auto files = spool_files(path);
    REQUIRE(files.size() == 1);
    struct stat st {};
    REQUIRE(::stat(files.front().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    for (int i = 0; i < 50; ++i) CHECK(a.log->record(probe(i)) == 0);  // no seq yet: not in the store
    CHECK(st.st_size == 0);
    REQUIRE(::stat(files.front().c_str(), &st) == 0);
    CHECK(st.st_size > 50 * 8);
    Raw raw(path);
    CHECK(raw.count("SELECT COUNT(*) FROM audit_events") == 0);
    CHECK(a.log->queue_depth() == 50);

    a.log->flush();
    CHECK(raw.count("SELECT COUNT(*) FROM audit_events") == 50);
    CHECK(a.log->queue_depth() == 0);
    CHECK(a.log->head_seq() == 50);
    // The store knows how much of the spool it holds, in the same commit.
    CHECK(raw.count("SELECT ingested FROM audit_spools") == st.st_size);
    auto r = a.verify_online();
    CHECK_MESSAGE(r.ok, r.message);
    CHECK(r.events == 50);
    CHECK(r.checkpoints == 1);  // one batch: its checkpoint covers all 50

    // Without flush(), the ingesting thread stores them within its interval.
    for (int i = 50; i < 60; ++i) a.log->record(probe(i));
    a.log.reset();  // the last round on close stores the rest
    CHECK(raw.count("SELECT COUNT(*) FROM audit_events") == 60);
    CHECK(spool_files(path).empty());
    CHECK(raw.count("SELECT COUNT(*) FROM audit_spools") == 0);
}

TEST_CASE("spooled: a dead writer's spool is stored once, behind a marker; a torn tail is reported") {
    const std::string path = fresh_db("spool_recover");
    AuditStack a(path);
    a.fill(3);
    a.log.reset();
    {
        // A writer that "crashes": two events stored, three more only spooled, then a torn frame.
        auto spool = audit::SpoolFile::create(path);
        for (int i = 0; i < 5; ++i) spool.append(probe(i), kStart + i);
        const auto stored_upto = spool.read_from(0).events.at(1).end;
        Raw raw(path);
        raw.exec("INSERT INTO audit_spools(id, ingested) VALUES ('" + spool.id() + "', " + std::to_string(stored_upto) +
                 ")");
        const int fd = ::open(spool.path().c_str(), O_WRONLY | O_APPEND);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, "\0\0\0\x40junk", 8) == 8);
        ::close(fd);
        // A live writer's spool is left alone.
        a.log = std::make_unique<audit::Log>(*a.sink, *a.keys, a.clock, spooled(path));
        CHECK(spool_files(path).size() == 2);
        a.log.reset();
        CHECK(spool_files(path).size() == 1);  // the live one's own, closed cleanly
    }                                          // the "crashed" writer's lock goes with it
    a.log = std::make_unique<audit::Log>(*a.sink, *a.keys, a.clock, spooled(path));
    a.log->flush();
    const auto events = a.events();
    REQUIRE(events.size() == 3 + 1 + 3);
    CHECK(events[3].type == audit::EventType::audit_recovered);
    const auto d = nlohmann::json::parse(events[3].details);
    CHECK(d["events"] == 3);
    CHECK(d["unreadable_bytes"] == 8);
    for (int i = 0; i < 3; ++i) {
        CHECK(nlohmann::json::parse(events[4 + i].details)["i"] == i + 2);  // the three not yet stored
        CHECK(events[4 + i].time == kStart + i + 2);                        // when they were recorded
    }
    CHECK(spool_files(path).size() == 1);  // only the new writer's
    auto r = a.verify_online();
    CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("spooled: fail closed while the store refuses the events, and none lost or doubled after") {
    const std::string path = fresh_db("spool_fail");
    AuditStack a(path, spooled(path));
    a.log->record(probe(0));
    a.log->flush();
    Raw raw(path);
    raw.exec("CREATE TRIGGER block BEFORE INSERT ON audit_events BEGIN SELECT RAISE(FAIL, 'disk full'); END;");
    a.log->record(probe(1));  // spooled: durable, the store has not seen it yet
    CHECK_THROWS_AS(a.log->flush(), Error);
    CHECK(a.log->write_error().find("disk full") != std::string::npos);
    try {
        a.log->record(probe(2));
        FAIL("record() must refuse while the store refuses the spooled events");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::audit_failure);
        CHECK(std::string(e.what()).find("disk full") != std::string::npos);
    }
    raw.exec("DROP TRIGGER block");
    a.log->flush();  // the next attempt stores the kept batch
    CHECK(a.log->write_error().empty());
    a.log->record(probe(3));
    a.log->flush();
    std::vector<int> seen;
    for (const auto& e : a.events()) seen.push_back(nlohmann::json::parse(e.details)["i"].get<int>());
    CHECK(seen == std::vector<int>{0, 1, 3});
    auto r = a.verify_online();
    CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE(
    "seals: one MAC per batch covers the batch; an edit inside it, a stripped seal or an unsealed append is found") {
    const std::string path = fresh_db("seal");
    AuditStack a(path, spooled(path, std::chrono::milliseconds(1000)));
    for (int i = 0; i < 30; ++i) a.log->record(probe(i));
    a.log->flush();  // one batch: seq 1..30, sealed by 30
    for (int i = 30; i < 40; ++i) a.log->record(probe(i));
    a.log->flush();  // seq 31..40, sealed by 40
    auto events = a.events();
    REQUIRE(events.size() == 40);
    for (const auto& e : events) CHECK(e.mac.empty() == (e.seq != 30 && e.seq != 40));
    auto r = a.verify_online();
    REQUIRE_MESSAGE(r.ok, r.message);
    Raw raw(path);

    SUBCASE("an event inside a batch edited, the chain re-hashed up to the end: the batch's seal fails") {
        std::string prev = events[30].prev_hash;  // seq 31's predecessor
        for (std::size_t i = 30; i < events.size(); ++i) {
            audit::Event e = events[i];
            if (e.seq == 35) e.actor = "cli:mallory";
            e.prev_hash = prev;
            e.hash = audit::compute_hash(e);
            prev = e.hash;
            raw.exec("UPDATE audit_events SET actor = '" + e.actor + "', prev_hash = '" + e.prev_hash + "', hash = '" +
                     e.hash + "' WHERE seq = " + std::to_string(e.seq));
        }
        r = a.verify_online();
        CHECK_FALSE(r.ok);
        CHECK(r.problem == audit::Problem::bad_mac);
        CHECK(r.first_bad_seq == 31);  // the first event the broken seal covers
    }
    SUBCASE("the seal stripped from the last batch") {
        raw.exec("UPDATE audit_events SET mac = '' WHERE seq = 40");
        r = a.verify_online();
        CHECK_FALSE(r.ok);
        CHECK(r.problem == audit::Problem::unsealed);
        CHECK(r.first_bad_seq == 31);
    }
    SUBCASE("an event appended without a MAC") {
        audit::Event f = events.back();
        f.seq = 41;
        f.actor = "cli:mallory";
        f.prev_hash = events.back().hash;
        f.hash = audit::compute_hash(f);
        f.mac.clear();
        raw.exec(
            "INSERT INTO audit_events(seq, time, type, actor, key, kid, op, outcome, details, prev_hash, hash, mac) "
            "SELECT 41, time, type, 'cli:mallory', key, kid, op, outcome, details, '" +
            f.prev_hash + "', '" + f.hash + "', '' FROM audit_events WHERE seq = 40");
        r = a.verify_online();
        CHECK_FALSE(r.ok);
        CHECK(r.problem == audit::Problem::unsealed);
        CHECK(r.first_bad_seq == 41);
    }
}

TEST_CASE("spooled: a full spool is replaced by a fresh one and deleted once its events are stored") {
    const std::string path = fresh_db("spool_rotate");
    audit::LogOptions o = spooled(path, std::chrono::milliseconds(1000));
    o.spool_rotate_bytes = 2048;  // about 20 events
    AuditStack a(path, o);
    Raw raw(path);
    std::set<std::string> seen_files;
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 40; ++i) a.log->record(probe(round * 40 + i));
        const auto before = spool_files(path);
        REQUIRE(before.size() == 1);
        seen_files.insert(before.front());
        a.log->flush();  // stores the round; the spool was over 2 KB: rotated
        const auto after = spool_files(path);
        CHECK(after.size() == 1);                                    // the full one is gone...
        CHECK(after.front() != before.front());                      // ...replaced by a fresh one
        CHECK(raw.count("SELECT COUNT(*) FROM audit_spools") == 0);  // and its mark with it
        CHECK(raw.count("SELECT COUNT(*) FROM audit_events") == (round + 1) * 40);
    }
    CHECK(seen_files.size() == 5);
    a.log.reset();
    CHECK(spool_files(path).empty());
    std::vector<int> order;
    for (const auto& e : a.events()) order.push_back(nlohmann::json::parse(e.details)["i"].get<int>());
    REQUIRE(order.size() == 200);
    for (int i = 0; i < 200; ++i) CHECK(order[static_cast<std::size_t>(i)] == i);
    auto r = a.verify_online();
    CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("spooled: a dead writer's spools are stored in the order it made them") {
    const std::string path = fresh_db("spool_order");
    AuditStack a(path);
    a.log.reset();
    {
        const std::string series = audit::SpoolFile::new_series();
        // Made in this order; the directory may list them in any order.
        for (std::uint32_t n : {0U, 1U, 2U}) {
            auto spool = audit::SpoolFile::create(path, series, n);
            for (int i = 0; i < 3; ++i) spool.append(probe(static_cast<int>(n) * 3 + i), kStart);
        }
    }
    a.log = std::make_unique<audit::Log>(*a.sink, *a.keys, a.clock, spooled(path));
    a.log.reset();
    std::vector<int> order;
    int markers = 0;
    for (const auto& e : a.events()) {
        if (e.type == audit::EventType::audit_recovered) {
            ++markers;
            continue;
        }
        order.push_back(nlohmann::json::parse(e.details)["i"].get<int>());
    }
    CHECK(markers == 3);
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8});
    CHECK(spool_files(path).empty());
}
