#pragma once
// RAII over the SQLite C API: a connection, prepared statements and
// transactions. SQLITE_BUSY/SQLITE_LOCKED become Error(store_locked); every
// other failure Error(store_failure) with SQLite's message.
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kw::core::sqlite {

[[noreturn]] void throw_sqlite(sqlite3* db, int rc, std::string_view context);

/// Process-wide SQLite settings for a long-running server, to call before
/// the process opens its first connection (SQLite refuses them afterwards:
/// false). Turns off SQLite's allocation statistics, which nothing here
/// reads and which put every SQLite malloc and free behind one global
/// mutex: the audit ingester spent about 8 us per event here, 7 without.
/// Not called in a library that may share SQLite with its host (the
/// PKCS#11 module does not use SQLite at all).
bool configure_sqlite_for_server() noexcept;

class Database {
public:
    /// Opens (creating with mode 0600) the database file at `path`. A lock
    /// held by another connection is waited for up to `busy_timeout_ms`
    /// (tries 50 us apart at first, backing off to 1 ms), then the call
    /// fails with Error(store_locked).
    Database(const std::string& path, int busy_timeout_ms);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    void exec(const char* sql);
    [[nodiscard]] sqlite3* get() const noexcept { return db_; }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }

    /// Keeps the WAL bounded for a connection that commits all the time (the
    /// audit ingester): once a commit through it leaves `frames` or more
    /// frames in the WAL, it runs a RESTART checkpoint there and then. Why
    /// background PASSIVE checkpoints cannot do this: wal_checkpointer.hpp.
    /// The checkpoint holds new writers off while it copies the rest, and the
    /// next commit writes the WAL from its start again (the file keeps its
    /// size). It does not wait: if another writer, a reader of an old
    /// snapshot or another checkpoint is in the way, it is counted as
    /// deferred and tried again at the next commit (the commit itself has
    /// happened).
    /// Replaces SQLite's auto-checkpoint on this connection.
    void restart_wal_past(std::int64_t frames);
    [[nodiscard]] std::uint64_t wal_restarts() const noexcept { return restarts_.load(); }
    [[nodiscard]] std::uint64_t wal_restarts_deferred() const noexcept { return restarts_deferred_.load(); }

private:
    static int on_busy(void* self, int count);
    static int on_wal_commit(void* self, sqlite3* db, const char* schema, int frames);

    sqlite3* db_ = nullptr;
    std::string path_;
    std::chrono::milliseconds busy_timeout_{0};
    std::chrono::steady_clock::time_point busy_since_;  // of the wait in progress
    std::int64_t restart_past_ = 0;
    bool no_wait_ = false;  // in on_wal_commit: on_busy gives up at once
    std::atomic<std::uint64_t> restarts_{0};
    std::atomic<std::uint64_t> restarts_deferred_{0};
};

class Statement {
public:
    Statement(const Database& db, const char* sql);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& bind(int index, std::string_view text);
    Statement& bind(int index, std::int64_t value);
    Statement& bind(int index, std::span<const std::uint8_t> blob);
    Statement& bind_null(int index);
    Statement& bind(int index, const std::optional<std::int64_t>& value) {
        return value ? bind(index, *value) : bind_null(index);
    }

    /// True while a row is available; false when done.
    bool step();
    /// Runs a statement that returns no rows.
    void run() { step(); }
    void reset();

    [[nodiscard]] std::string text(int col) const;
    [[nodiscard]] std::int64_t integer(int col) const;
    [[nodiscard]] std::optional<std::int64_t> maybe_integer(int col) const;
    [[nodiscard]] std::vector<std::uint8_t> blob(int col) const;
    [[nodiscard]] bool is_null(int col) const;

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
};

/// BEGIN IMMEDIATE (takes the write lock up front, so lock waits happen here
/// and not half-way) ... COMMIT, or ROLLBACK if never committed.
class Transaction {
public:
    explicit Transaction(Database& db);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();

private:
    Database& db_;
    bool done_ = false;
};

}  // namespace kw::core::sqlite
