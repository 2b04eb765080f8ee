#include "core/store/sqlite/database.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "core/error.hpp"

namespace kw::core::sqlite {

void throw_sqlite(sqlite3* db, int rc, std::string_view context) {
    std::string msg = std::string(context) + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
        throw Error(ErrorKind::store_locked, msg + " (another process is writing to the store)");
    }
    throw Error(ErrorKind::store_failure, msg);
}

bool configure_sqlite_for_server() noexcept {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
}

Database::Database(const std::string& path, int busy_timeout_ms) : path_(path) {
    // Create the file ourselves so it is 0600 from its first byte; SQLite
    // gives the -wal and -shm files the same mode as the database. Only when
    // it does not exist yet: closing any descriptor of a file drops every
    // POSIX lock this process holds on it, including SQLite's locks from an
    // earlier connection (keywardend opens the store twice), after which
    // another process could think it is alone and delete the WAL.
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            throw Error(ErrorKind::store_failure, "cannot create store " + path + ": " + std::strerror(errno));
        }
        if (fd >= 0) ::close(fd);
    }
    int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close(db_);
        db_ = nullptr;
        throw Error(ErrorKind::store_failure, "cannot open store " + path + ": " + msg);
    }
    sqlite3_extended_result_codes(db_, 1);
    busy_timeout_ = std::chrono::milliseconds(busy_timeout_ms);
    sqlite3_busy_handler(db_, &Database::on_busy, this);
}

void Database::restart_wal_past(std::int64_t frames) {
    restart_past_ = frames;
    sqlite3_wal_hook(db_, frames > 0 ? &Database::on_wal_commit : nullptr, this);
}

int Database::on_wal_commit(void* self, sqlite3* db, const char* schema, int frames) {
    auto* d = static_cast<Database*>(self);
    if (frames < d->restart_past_) return SQLITE_OK;
    // No waiting: a background checkpointer holding the checkpoint lock may
    // be descheduled (it runs at SCHED_IDLE), and the writer is not to wait
    // on it. A busy store is simply tried again at a later commit.
    d->no_wait_ = true;
    const int rc = sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
    d->no_wait_ = false;
    (rc == SQLITE_OK ? d->restarts_ : d->restarts_deferred_).fetch_add(1);
    return SQLITE_OK;  // the commit happened: never report it as failed
}

int Database::on_busy(void* self, int count) {
    // SQLite's own handler (sqlite3_busy_timeout) sleeps 1, 2, 5, 10 ms ...
    // between tries. The usual holder of the write lock here is another of
    // keywardend's own writers (the audit ingester's commit, well under a
    // millisecond), and whatever waits on this connection (every request
    // behind the store's mutex) would wait out the whole sleep. Tries start
    // 50 us apart and back off to 1 ms.
    auto* db = static_cast<Database*>(self);
    if (db->no_wait_) return 0;
    const auto now = std::chrono::steady_clock::now();
    if (count == 0) db->busy_since_ = now;
    if (now - db->busy_since_ >= db->busy_timeout_) return 0;  // SQLITE_BUSY: store_locked
    const auto wait = std::min<std::chrono::microseconds>(std::chrono::microseconds(50 << std::min(count, 5)),
                                                          std::chrono::milliseconds(1));
    std::this_thread::sleep_for(wait);
    return 1;
}

Database::~Database() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
}

void Database::exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        int primary = rc & 0xff;
        if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
            throw Error(ErrorKind::store_locked, msg + " (another process is writing to the store)");
        }
        throw Error(ErrorKind::store_failure, msg);
    }
}

Statement::Statement(const Database& db, const char* sql) : db_(db.get()) {
    int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt_, nullptr);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "prepare");
}

Statement::~Statement() {
    sqlite3_finalize(stmt_);
}

Statement& Statement::bind(int index, std::string_view text) {
    int rc = sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "bind");
    return *this;
}

Statement& Statement::bind(int index, std::int64_t value) {
    int rc = sqlite3_bind_int64(stmt_, index, value);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "bind");
    return *this;
}

Statement& Statement::bind(int index, std::span<const std::uint8_t> blob) {
    int rc = blob.empty()
                 ? sqlite3_bind_null(stmt_, index)
                 : sqlite3_bind_blob(stmt_, index, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "bind");
    return *this;
}

Statement& Statement::bind_null(int index) {
    int rc = sqlite3_bind_null(stmt_, index);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "bind");
    return *this;
}

bool Statement::step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    sqlite3_reset(stmt_);
    throw_sqlite(db_, rc, "step");
}

void Statement::reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

std::string Statement::text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p != nullptr ? std::string(reinterpret_cast<const char*>(p),
                                      static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
                        : std::string();
}

std::int64_t Statement::integer(int col) const {
    return sqlite3_column_int64(stmt_, col);
}

std::optional<std::int64_t> Statement::maybe_integer(int col) const {
    if (is_null(col)) return std::nullopt;
    return integer(col);
}

std::vector<std::uint8_t> Statement::blob(int col) const {
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, col));
    int n = sqlite3_column_bytes(stmt_, col);
    return p != nullptr ? std::vector<std::uint8_t>(p, p + n) : std::vector<std::uint8_t>();
}

bool Statement::is_null(int col) const {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

Transaction::Transaction(Database& db) : db_(db) {
    db_.exec("BEGIN IMMEDIATE");
}

Transaction::~Transaction() {
    if (!done_) {
        try {
            db_.exec("ROLLBACK");
        } catch (...) {  // nothing useful to do in a destructor
        }
    }
}

void Transaction::commit() {
    db_.exec("COMMIT");
    done_ = true;
}

}  // namespace kw::core::sqlite
