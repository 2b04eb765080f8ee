// Integration tests of the SQLite store: migrations, round trips, file
// permissions, locking and refusal of a newer schema. Files live under
// $KW_TEST_DIR (tests/with-token.sh).
#include "core/store/store.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "core/error.hpp"
#include "core/store/sqlite/migrations.hpp"
#include "core/store/sqlite/wal_checkpointer.hpp"

using namespace kw::core;

namespace {

std::string test_dir() {
    const char* d = std::getenv("KW_TEST_DIR");
    REQUIRE_MESSAGE(d != nullptr, "KW_TEST_DIR is not set: run through tests/with-token.sh");
    return d;
}

// A fresh database path per call.
std::string fresh_path(const std::string& name) {
    static int counter = 0;
    std::string p = test_dir() + "/store-" + name + "-" + std::to_string(++counter) + ".db";
    std::filesystem::remove(p);
    std::filesystem::remove(p + "-wal");
    std::filesystem::remove(p + "-shm");
    return p;
}

// Raw SQLite access, independent of the store's code.
class Raw {
public:
    explicit Raw(const std::string& path) {
        REQUIRE(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
        sqlite3_busy_timeout(db_, 2000);
    }
    ~Raw() { sqlite3_close_v2(db_); }
    Raw(const Raw&) = delete;
    Raw& operator=(const Raw&) = delete;

    int exec(const std::string& sql) {
        char* err = nullptr;
        int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
        if (err != nullptr) {
            MESSAGE("sqlite: " << err << " in " << sql);
            sqlite3_free(err);
        }
        return rc;
    }
    std::int64_t integer(const std::string& sql) {
        sqlite3_stmt* st = nullptr;
        REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
        REQUIRE(sqlite3_step(st) == SQLITE_ROW);
        std::int64_t v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
    }

private:
    sqlite3* db_ = nullptr;
};

unsigned mode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

template <typename F>
ErrorKind kind_thrown(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.kind();
    }
    FAIL("no kw::core::Error thrown");
    return ErrorKind::store_failure;
}

KeyVersion version(int n, const std::string& kid, bool primary) {
    KeyVersion v;
    v.version = n;
    v.kid = kid;
    v.state = VersionState::active;
    v.primary = primary;
    v.residency = Residency::wrapped;
    v.created_at = 1700000000 + n;
    v.state_changed_at = 1700000100 + n;
    v.wrapped_blob = {0x01, 0x02, static_cast<std::uint8_t>(n), 0x00, 0xff};
    return v;
}

ManagedKey simple_key(const std::string& name, const std::string& kid) {
    ManagedKey k;
    k.id = "id-" + name;
    k.name = name;
    k.type = KeyType::hmac;
    k.created_at = 1700000000;
    k.versions.push_back(version(1, kid, true));
    return k;
}

int primaries(const ManagedKey& k) {
    int n = 0;
    for (const auto& v : k.versions) n += v.primary ? 1 : 0;
    return n;
}

}  // namespace

TEST_CASE("a new store is migrated to the latest schema, 0600, and reopening keeps data without re-migrating") {
    const std::string path = fresh_path("migrate");
    const int latest = sqlite::latest_schema_version();
    REQUIRE(latest >= 2);
    {
        auto store = open_store("sqlite:" + path);
        auto st = store->stats();
        CHECK(st.schema_version == latest);
        CHECK(st.backend == "sqlite");
        CHECK(st.location == path);
        CHECK(st.keys_total == 0);
        store->create_key(simple_key("kept", "kid-kept"));
        store->set_meta("marker", "one");
        CHECK(mode_of(path) == 0600);
        if (std::filesystem::exists(path + "-wal")) CHECK(mode_of(path + "-wal") == 0600);
        if (std::filesystem::exists(path + "-shm")) CHECK(mode_of(path + "-shm") == 0600);
        CHECK(std::filesystem::exists(path + "-wal"));  // WAL journal while open
    }
    {
        Raw raw(path);
        CHECK(raw.integer("SELECT COUNT(*) FROM schema_migrations") == latest);
        CHECK(raw.integer("SELECT MAX(version) FROM schema_migrations") == latest);
        // Mark the migration rows: a re-migration would fail or rewrite them.
        REQUIRE(raw.exec("UPDATE schema_migrations SET applied_at = 12345") == SQLITE_OK);
        // The store runs in WAL mode (a persistent property of the file).
        CHECK(raw.integer("SELECT journal_mode = 'wal' FROM pragma_journal_mode") == 1);
    }
    for (const char* prefix : {"sqlite:", "sqlite://", ""}) {
        INFO("url prefix '" << prefix << "'");
        auto store = open_store(prefix + path);
        CHECK(store->stats().schema_version == latest);
        CHECK(store->stats().keys_total == 1);
        auto k = store->find_key("kept");
        REQUIRE(k.has_value());
        CHECK(k->versions.size() == 1);
        CHECK(store->get_meta("marker") == "one");
    }
    Raw raw(path);
    CHECK(raw.integer("SELECT COUNT(*) FROM schema_migrations") == latest);
    CHECK(raw.integer("SELECT COUNT(*) FROM schema_migrations WHERE applied_at = 12345") == latest);
    CHECK(mode_of(path) == 0600);
}

TEST_CASE("the store file is created 0600 even under a permissive umask") {
    const std::string path = fresh_path("umask");
    mode_t old = ::umask(0);
    {
        auto store = open_store(path);
        store->set_meta("x", "y");
    }
    ::umask(old);
    CHECK(mode_of(path) == 0600);
    for (const char* suffix : {"-wal", "-shm"}) {
        if (std::filesystem::exists(path + suffix)) CHECK(mode_of(path + suffix) == 0600);
    }
}

TEST_CASE("open_store refuses bad URLs") {
    CHECK(kind_thrown([] { (void)open_store("sqlite:"); }) == ErrorKind::config);
    CHECK(kind_thrown([] { (void)open_store("postgres://db/keywarden"); }) == ErrorKind::config);
    CHECK(kind_thrown([&] { (void)open_store("sqlite:" + test_dir() + "/no/such/dir/x.db"); }) ==
          ErrorKind::store_failure);
}

TEST_CASE("create/find/list round-trip every field") {
    auto store = open_store("sqlite:" + fresh_path("roundtrip"));
    ManagedKey k;
    k.id = "5f0c1c2e-8d9a-4e6b-9f3a-0123456789ab";
    k.name = "payments/signing:v1";
    k.type = KeyType::jwt;
    k.rsa_bits = 3072;
    k.curve = Curve::p384;
    k.jwt_alg = JwtAlg::PS256;
    k.scopes = {"payments:sign", "ledger:read", "with space", "ünïcode"};
    k.owner = "team-payments";
    k.labels = {{"env", "prod"}, {"cost-center", "42"}, {"quote\"d", "va'lue"}};
    k.policy = "rotate-90d";
    k.created_at = 1700000000;
    k.expires_at = 1800000000;
    k.revoked_at = 1750000000;
    KeyVersion v1 = version(1, "kidAAAAAAAAA1", false);
    v1.state = VersionState::deactivated;
    v1.public_key = {0x30, 0x82, 0x01, 0x22, 0x00, 0x00, 0x07};
    KeyVersion v2 = version(2, "kidAAAAAAAAA2", true);
    v2.residency = Residency::token;
    v2.wrapped_blob.clear();
    v2.public_key = std::vector<std::uint8_t>(300, 0xab);
    v2.state = VersionState::suspended;
    k.versions = {v1, v2};
    store->create_key(k);

    ManagedKey bare = simple_key("aaa-bare", "kidBARE000001");
    bare.versions[0].wrapped_blob.clear();
    store->create_key(bare);

    auto check_full = [&](const ManagedKey& got) {
        CHECK(got.id == k.id);
        CHECK(got.name == k.name);
        CHECK(got.type == KeyType::jwt);
        CHECK(got.rsa_bits == 3072);
        CHECK(got.curve == Curve::p384);
        CHECK(got.jwt_alg == JwtAlg::PS256);
        CHECK(got.scopes == k.scopes);
        CHECK(got.owner == k.owner);
        CHECK(got.labels == k.labels);
        CHECK(got.policy == k.policy);
        CHECK(got.created_at == k.created_at);
        CHECK(got.expires_at == k.expires_at);
        CHECK(got.revoked_at == k.revoked_at);
        REQUIRE(got.versions.size() == 2);
        for (std::size_t i = 0; i < 2; ++i) {
            INFO("version " << i + 1);
            const auto& a = got.versions[i];
            const auto& b = k.versions[i];
            CHECK(a.version == b.version);
            CHECK(a.kid == b.kid);
            CHECK(a.state == b.state);
            CHECK(a.primary == b.primary);
            CHECK(a.residency == b.residency);
            CHECK(a.created_at == b.created_at);
            CHECK(a.state_changed_at == b.state_changed_at);
            CHECK(a.wrapped_blob == b.wrapped_blob);
            CHECK(a.public_key == b.public_key);
        }
        REQUIRE(got.primary() != nullptr);
        CHECK(got.primary()->kid == "kidAAAAAAAAA2");
    };
    auto got = store->find_key(k.name);
    REQUIRE(got.has_value());
    check_full(*got);

    auto b = store->find_key("aaa-bare");
    REQUIRE(b.has_value());
    CHECK(b->rsa_bits == 0);
    CHECK_FALSE(b->curve.has_value());
    CHECK_FALSE(b->jwt_alg.has_value());
    CHECK(b->scopes.empty());
    CHECK(b->labels.empty());
    CHECK_FALSE(b->expires_at.has_value());
    CHECK_FALSE(b->revoked_at.has_value());
    REQUIRE(b->versions.size() == 1);
    CHECK(b->versions[0].wrapped_blob.empty());
    CHECK(b->versions[0].public_key.empty());

    CHECK_FALSE(store->find_key("nope").has_value());
    CHECK_FALSE(store->find_key("PAYMENTS/SIGNING:V1").has_value());  // names are case-sensitive

    auto all = store->list_keys();
    REQUIRE(all.size() == 2);
    CHECK(all[0].name == "aaa-bare");  // ordered by name
    check_full(all[1]);

    auto st = store->stats();
    CHECK(st.keys_total == 2);
    CHECK(st.keys_by_type["jwt"] == 1);
    CHECK(st.keys_by_type["hmac"] == 1);
    CHECK(st.versions_by_state["deactivated"] == 1);
    CHECK(st.versions_by_state["suspended"] == 1);
    CHECK(st.versions_by_state["active"] == 1);
}

TEST_CASE("duplicate names are already_exists and leave nothing behind") {
    auto store = open_store("sqlite:" + fresh_path("dup"));
    store->create_key(simple_key("dup", "kid-dup-1"));
    ManagedKey again = simple_key("dup", "kid-dup-2");
    again.id = "another-id";
    CHECK(kind_thrown([&] { store->create_key(again); }) == ErrorKind::already_exists);
    auto k = store->find_key("dup");
    REQUIRE(k);
    CHECK(k->id == "id-dup");
    CHECK(k->versions.size() == 1);
    CHECK(store->stats().keys_total == 1);
    CHECK(store->stats().versions_by_state["active"] == 1);
}

TEST_CASE("create_key is atomic: a failing version leaves no key row") {
    auto store = open_store("sqlite:" + fresh_path("atomic"));
    store->create_key(simple_key("first", "kid-shared"));
    // Second key reuses a kid (UNIQUE): the whole insert must roll back.
    ManagedKey clash = simple_key("second", "kid-shared");
    CHECK(kind_thrown([&] { store->create_key(clash); }) == ErrorKind::store_failure);
    CHECK_FALSE(store->find_key("second").has_value());
    // Two primaries in one key violate the one-primary index.
    ManagedKey two = simple_key("two-primaries", "kid-two-1");
    two.versions.push_back(version(2, "kid-two-2", true));
    CHECK(kind_thrown([&] { store->create_key(two); }) == ErrorKind::store_failure);
    CHECK_FALSE(store->find_key("two-primaries").has_value());
    CHECK(store->stats().keys_total == 1);
    // The connection is still usable afterwards.
    store->create_key(simple_key("third", "kid-third"));
    CHECK(store->find_key("third").has_value());
}

TEST_CASE("versions: add, set_primary keeps exactly one primary, set_version_state") {
    auto store = open_store("sqlite:" + fresh_path("versions"));
    ManagedKey k = simple_key("rotating", "kid-v1");
    store->create_key(k);
    store->add_version(k.id, version(2, "kid-v2", false));
    store->add_version(k.id, version(3, "kid-v3", false));
    // Adding a second primary directly is refused by the database.
    CHECK(kind_thrown([&] { store->add_version(k.id, version(4, "kid-v4", true)); }) == ErrorKind::store_failure);

    auto got = store->find_key("rotating");
    REQUIRE(got);
    REQUIRE(got->versions.size() == 3);
    CHECK(primaries(*got) == 1);
    CHECK(got->primary()->kid == "kid-v1");

    store->set_primary(k.id, "kid-v3");
    got = store->find_key("rotating");
    CHECK(primaries(*got) == 1);
    CHECK(got->primary()->kid == "kid-v3");

    store->set_primary(k.id, "kid-v2");
    got = store->find_key("rotating");
    CHECK(primaries(*got) == 1);
    CHECK(got->primary()->kid == "kid-v2");

    // Unknown kid: not_found, and the current primary is kept (rolled back).
    CHECK(kind_thrown([&] { store->set_primary(k.id, "kid-missing"); }) == ErrorKind::not_found);
    got = store->find_key("rotating");
    CHECK(primaries(*got) == 1);
    CHECK(got->primary()->kid == "kid-v2");
    // A kid of another key is not_found too.
    store->create_key(simple_key("other", "kid-other"));
    CHECK(kind_thrown([&] { store->set_primary(k.id, "kid-other"); }) == ErrorKind::not_found);
    CHECK(store->find_key("rotating")->primary()->kid == "kid-v2");
    CHECK(store->find_key("other")->primary()->kid == "kid-other");

    store->set_version_state("kid-v1", VersionState::deactivated, 1800000000);
    got = store->find_key("rotating");
    CHECK(got->version_by_kid("kid-v1")->state == VersionState::deactivated);
    CHECK(got->version_by_kid("kid-v1")->state_changed_at == 1800000000);
    CHECK(got->version_by_kid("kid-v2")->state == VersionState::active);
    CHECK(kind_thrown([&] { store->set_version_state("kid-missing", VersionState::active, 1); }) ==
          ErrorKind::not_found);

    store->set_revoked(k.id, 1900000000);
    CHECK(store->find_key("rotating")->revoked_at == 1900000000);
    CHECK_FALSE(store->find_key("other")->revoked_at.has_value());
}

TEST_CASE("transition records history and refuses a stale from-state") {
    auto store = open_store("sqlite:" + fresh_path("transition"));
    ManagedKey k = simple_key("lifecycle", "kid-lc");
    store->create_key(k);
    store->transition({"kid-lc", VersionState::active, VersionState::suspended, 100, "test", "pause"});
    CHECK(store->find_key("lifecycle")->versions[0].state == VersionState::suspended);
    CHECK(kind_thrown([&] {
              store->transition({"kid-lc", VersionState::active, VersionState::deactivated, 200, "test", "stale"});
          }) == ErrorKind::not_permitted);
    CHECK(store->find_key("lifecycle")->versions[0].state == VersionState::suspended);
    auto h = store->state_history(k.id);
    REQUIRE(h.size() == 1);
    CHECK(h[0].kid == "kid-lc");
    CHECK(h[0].from == VersionState::active);
    CHECK(h[0].to == VersionState::suspended);
    CHECK(h[0].at == 100);
    CHECK(h[0].actor == "test");
    CHECK(h[0].reason == "pause");
    store->clear_key_material("kid-lc");
    CHECK(store->find_key("lifecycle")->versions[0].wrapped_blob.empty());
}

TEST_CASE("meta get/set") {
    const std::string path = fresh_path("meta");
    {
        auto store = open_store(path);
        CHECK_FALSE(store->get_meta("root").has_value());
        store->set_meta("root", "v1");
        CHECK(store->get_meta("root") == "v1");
        store->set_meta("root", "v2");
        CHECK(store->get_meta("root") == "v2");
        store->set_meta("empty", "");
        CHECK(store->get_meta("empty") == "");
        CHECK_FALSE(store->get_meta("ROOT").has_value());
    }
    auto store = open_store(path);
    CHECK(store->get_meta("root") == "v2");
    CHECK(store->get_meta("empty") == "");
}

TEST_CASE("rate limits set through the admin API: put replaces, list is ordered, remove once, bad values refused") {
    const std::string path = fresh_path("limits");
    {
        auto store = open_store(path);
        CHECK(store->limits().empty());
        store->put_limit({"token", "kid-b", 5, 2000, 5, 100, "admin-kid"});
        store->put_limit({"key", "pay", 3, 1000, 3, 101, "admin-kid"});
        store->put_limit({"token_default", "", 50, 1000, 60, 102, "admin-kid"});
        store->put_limit({"token", "kid-b", 7, 1000, 9, 103, "other-admin"});  // replaces
        const auto all = store->limits();
        REQUIRE(all.size() == 3);
        CHECK(all[0].scope == "key");
        CHECK(all[1].scope == "token");
        CHECK(all[1].subject == "kid-b");
        CHECK(all[1].limit == 7);
        CHECK(all[1].period_ms == 1000);
        CHECK(all[1].burst == 9);
        CHECK(all[1].updated_at == 103);
        CHECK(all[1].updated_by == "other-admin");
        CHECK(all[2].scope == "token_default");
        CHECK(all[2].subject.empty());
        // The schema refuses what the API refuses, whoever writes.
        CHECK_THROWS_AS(store->put_limit({"token", "kid-c", 0, 1000, 1, 104, "a"}), Error);
        CHECK_THROWS_AS(store->put_limit({"everything", "", 1, 1000, 1, 104, "a"}), Error);
        CHECK(store->remove_limit("key", "pay"));
        CHECK_FALSE(store->remove_limit("key", "pay"));
        CHECK_FALSE(store->remove_limit("token", "pay"));
    }
    auto store = open_store(path);  // kept across a reopen
    const auto all = store->limits();
    REQUIRE(all.size() == 2);
    CHECK(all[0].subject == "kid-b");
    CHECK(all[1].limit == 50);
}

TEST_CASE("a store locked by another connection gives store_locked after busy_timeout_ms, then works") {
    const std::string path = fresh_path("locked");
    auto store = open_store("sqlite:" + path, StoreOptions{100});
    store->create_key(simple_key("before", "kid-before"));

    Raw other(path);
    REQUIRE(other.exec("BEGIN EXCLUSIVE") == SQLITE_OK);
    const auto start = std::chrono::steady_clock::now();
    try {
        store->create_key(simple_key("during", "kid-during"));
        FAIL("wrote while another connection held the store exclusively");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::store_locked);
        CHECK(std::string(e.what()).find("another process") != std::string::npos);
    }
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    CHECK(waited >= 80);   // it did wait for the lock ...
    CHECK(waited < 1500);  // ... for about busy_timeout_ms, not the 2 s default
    CHECK(kind_thrown([&] { store->set_meta("k", "v"); }) == ErrorKind::store_locked);
    REQUIRE(other.exec("ROLLBACK") == SQLITE_OK);

    store->create_key(simple_key("during", "kid-during"));
    CHECK(store->find_key("during").has_value());
    CHECK(store->find_key("before").has_value());
    store->set_meta("k", "v");
    CHECK(store->get_meta("k") == "v");
    CHECK(store->stats().keys_total == 2);
}

TEST_CASE("a store with a newer schema than this binary is refused with store_failure") {
    const std::string path = fresh_path("newer");
    { auto store = open_store(path); }
    {
        Raw raw(path);
        const int future = sqlite::latest_schema_version() + 1;
        REQUIRE(raw.exec("INSERT INTO schema_migrations(version, applied_at) VALUES (" + std::to_string(future) +
                         ", 0)") == SQLITE_OK);
    }
    try {
        (void)open_store(path);
        FAIL("opened a store from the future");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::store_failure);
        CHECK(std::string(e.what()).find("newer") != std::string::npos);
    }
}

TEST_CASE("without auto-checkpoint commits stay in the WAL until the background checkpointer copies them") {
    const std::string path = fresh_path("walckpt");
    auto store = open_store("sqlite:" + path, StoreOptions{2000, false});
    const std::string big(64 * 1024, 'x');
    for (int i = 0; i < 100; ++i) store->set_meta("blob" + std::to_string(i), big);  // ~6.4 MB, > 1,000 pages
    // The default would have checkpointed after 1,000 pages; nothing did.
    const auto before = std::filesystem::file_size(path);
    CHECK(before < 1024 * 1024);
    CHECK(std::filesystem::file_size(path + "-wal") > 6 * 1024 * 1024);
    {
        sqlite::WalCheckpointer checkpointer(path, std::chrono::milliseconds(20));
        auto size = before;
        for (int i = 0; i < 250 && size <= 6 * 1024 * 1024; ++i) {  // up to 5 s on a loaded machine
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            size = std::filesystem::file_size(path);
        }
        CHECK(size > 6 * 1024 * 1024);
        CHECK(checkpointer.failures() == 0);
    }
    CHECK(store->get_meta("blob99") == big);
}

TEST_CASE("a writer that commits all the time keeps the WAL bounded with restart_wal_past") {
    // As keywardend: a writer committing new rows every half millisecond
    // (the audit ingester), a reader, and background PASSIVE checkpoints.
    // Those alone never get the WAL started over: without the writer's
    // RESTART it reached 26 to 50 MB here.
    const std::string path = fresh_path("walbound");
    auto run = [&](std::int64_t restart_past) {
        std::filesystem::remove(path);
        std::filesystem::remove(path + "-wal");
        std::filesystem::remove(path + "-shm");
        sqlite::Database writer(path, 2000);
        writer.exec("PRAGMA journal_mode=WAL");
        sqlite3_wal_autocheckpoint(writer.get(), 0);
        writer.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
        writer.restart_wal_past(restart_past);
        sqlite::Database reader(path, 2000);
        const std::string blob(8 * 1024, 'w');
        std::uintmax_t largest = 0;
        {
            sqlite::WalCheckpointer checkpointer(path, std::chrono::milliseconds(100));
            std::atomic<bool> stop{false};
            std::thread reads([&] {
                for (int n = 1; !stop; ++n) {
                    sqlite::Statement q(reader, "SELECT length(v) FROM t WHERE id = ?1");
                    q.bind(1, std::int64_t{n % 50 + 1});
                    (void)q.step();
                }
            });
            // A fixed number of commits, not a fixed time: the WAL's size must
            // not depend on how fast a busy machine runs this loop.
            int commits = 0;
            while (commits < 1000) {
                sqlite::Statement ins(writer, "INSERT INTO t(v) VALUES (?1)");
                ins.bind(1, blob);  // 2+ new pages a commit
                ins.run();
                ++commits;
                std::error_code ec;
                const auto wal = std::filesystem::file_size(path + "-wal", ec);
                if (!ec) largest = std::max(largest, wal);
                std::this_thread::sleep_for(std::chrono::microseconds(500));
            }
            stop = true;
            reads.join();
            CHECK(checkpointer.failures() == 0);
        }
        sqlite::Statement count(reader, "SELECT count(*) FROM t");
        REQUIRE(count.step());
        CHECK(count.integer(0) == 1000);  // nothing lost to the restarts
        return std::pair{largest, writer.wal_restarts()};
    };
    const auto [bounded, restarts] = run(256);  // 1 MiB of frames
    INFO("largest WAL with the bound: " << bounded << " bytes after " << restarts << " restarts");
    CHECK(restarts > 0);
    CHECK(bounded < 6 * 1024 * 1024);
    const auto [unbounded, none] = run(0);
    INFO("largest WAL without: " << unbounded << " bytes");
    CHECK(none == 0);
    CHECK(unbounded > 6 * 1024 * 1024);  // what the bound prevents
}

TEST_CASE("find_key keeps keys in memory, and sees every change at once, made here or by another process") {
    const std::string path = fresh_path("key_cache");
    auto here = open_store("sqlite:" + path);
    auto other = open_store("sqlite:" + path);  // a second connection, as hsm-keytool next to keywardend
    ManagedKey k = simple_key("cached", "kid-c1");
    here->create_key(k);
    REQUIRE(here->find_key("cached")->primary()->state == VersionState::active);
    REQUIRE(here->find_key("cached"));  // now from memory

    other->set_version_state("kid-c1", VersionState::suspended, 100);
    CHECK(here->find_key("cached")->primary()->state == VersionState::suspended);
    other->add_version(k.id, version(2, "kid-c2", false));
    CHECK(here->find_key("cached")->versions.size() == 2);
    other->set_primary(k.id, "kid-c2");
    CHECK(here->find_key("cached")->primary()->kid == "kid-c2");
    other->set_revoked(k.id, 200);
    CHECK(here->find_key("cached")->revoked_at == 200);
    // Changes through this connection too.
    here->set_version_state("kid-c2", VersionState::deactivated, 300);
    CHECK(here->find_key("cached")->primary()->state == VersionState::deactivated);
    CHECK_FALSE(here->find_key("never-made"));
    here->create_key(simple_key("never-made", "kid-n1"));
    CHECK(here->find_key("never-made"));
}

TEST_CASE("find_token keeps unlimited tokens in memory: this connection's changes at once, another's within 1 ms") {
    const std::string path = fresh_path("token_cache");
    auto here = open_store("sqlite:" + path);
    auto other = open_store("sqlite:" + path);  // hsm-keytool next to keywardend
    auto token_key = [](const std::string& name, const std::string& kid) {
        ManagedKey k = simple_key(name, kid);
        k.type = KeyType::api_token;
        k.versions.front().wrapped_blob.clear();
        return k;
    };
    auto record = [](const std::string& kid, std::uint8_t d, std::optional<std::int64_t> max_uses) {
        TokenRecord t;
        t.kid = kid;
        t.digest = std::vector<std::uint8_t>(32, d);
        t.prefix = "kw_test";
        t.display = "kw_test_" + kid;
        t.max_uses = max_uses;
        return t;
    };
    const auto after_window = [] { std::this_thread::sleep_for(std::chrono::milliseconds(3)); };
    const ManagedKey unlimited = token_key("tok-unlimited", "kid-u1");
    here->create_token_key(unlimited, record("kid-u1", 0xa1, std::nullopt));
    const ManagedKey limited = token_key("tok-limited", "kid-l1");
    here->create_token_key(limited, record("kid-l1", 0xb1, 3));
    const std::vector<std::uint8_t> du(32, 0xa1);
    const std::vector<std::uint8_t> dl(32, 0xb1);

    REQUIRE(here->find_token(du));
    REQUIRE(here->find_token(du)->key.name == "tok-unlimited");  // from memory now
    SUBCASE("another connection's state change, revocation and re-digest are seen after the window") {
        other->set_version_state("kid-u1", VersionState::suspended, 100);
        after_window();
        CHECK(here->find_token(du)->key.primary()->state == VersionState::suspended);
        other->set_revoked(unlimited.id, 200);
        after_window();
        CHECK(here->find_token(du)->key.revoked_at == 200);
        other->update_token_digest("kid-u1", std::vector<std::uint8_t>(32, 0xa2), 2);
        after_window();
        CHECK_FALSE(here->find_token(du));
        CHECK(here->find_token(std::vector<std::uint8_t>(32, 0xa2))->token.pepper_version == 2);
    }
    SUBCASE("this connection's changes are seen by the very next call") {
        here->set_version_state("kid-u1", VersionState::compromised, 100);
        CHECK(here->find_token(du)->key.primary()->state == VersionState::compromised);
        here->set_revoked(unlimited.id, 300);
        CHECK(here->find_token(du)->key.revoked_at == 300);
    }
    SUBCASE("a limited token is read each time: its credits are never answered from memory") {
        CHECK(here->find_token(dl)->token.remaining(0) == 3);
        REQUIRE(other->consume_token_use("kid-l1", 10));
        CHECK(here->find_token(dl)->token.remaining(10) == 2);  // no wait: not cached
        REQUIRE(here->consume_token_use("kid-l1", 11));
        CHECK(here->find_token(dl)->token.remaining(11) == 1);
    }
    SUBCASE("uses counted by another connection reach the store, and the token is still found") {
        const TokenUsage use{"kid-u1", 5, 1700000500};
        other->add_token_uses(std::span<const TokenUsage>(&use, 1));
        after_window();
        CHECK(here->find_token(du));
        CHECK(here->token_record("kid-u1")->uses == 5);
    }
    CHECK_FALSE(here->find_token(std::vector<std::uint8_t>(32, 0xee)));
}
