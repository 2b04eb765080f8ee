#pragma once
// Audit events in the SQLite store file, on a connection of their own so the
// audit writer (the Log leader) never waits on the key store's mutex.
//
// Durability: "process" = WAL + synchronous=NORMAL (a commit survives kill -9
// of any process); "power" = synchronous=FULL (also fsync'd, survives power
// loss). Either way a batch is committed before anyone is told it is durable.
#include <memory>

#include "core/audit/sink.hpp"
#include "core/store/sqlite/database.hpp"
#include "core/store/sqlite/statement_cache.hpp"

namespace kw::core::audit {

enum class Durability { process, power };

class SqliteSink final : public Sink {
public:
    /// auto_checkpoint=false: commits never checkpoint the WAL (a
    /// sqlite::WalCheckpointer does, see wal_checkpointer.hpp).
    SqliteSink(const std::string& path, Durability durability, int busy_timeout_ms = 5000, bool auto_checkpoint = true);
    ~SqliteSink() override;

    [[nodiscard]] std::optional<Event> last_event() override;
    [[nodiscard]] std::optional<Checkpoint> last_checkpoint() override;
    void append(std::span<const Event> events, const std::optional<Checkpoint>& checkpoint) override;
    Batch append_at_head(
        const std::function<Batch(const std::optional<Event>&, const std::optional<Checkpoint>&)>& build) override;
    void for_each(const std::function<bool(const Event&)>& fn) override;
    [[nodiscard]] std::vector<Checkpoint> checkpoints() override;
    [[nodiscard]] std::vector<Event> query(const Query& q) override;
    /// Error path of verification: which stored event has this hash.
    [[nodiscard]] std::optional<std::uint64_t> seq_of_hash(const std::string& hash);
    [[nodiscard]] std::uint64_t spool_ingested(const std::string& id) override;
    void forget_spool(const std::string& id) override;
    /// See sqlite::Database::restart_wal_past: keywardend's ingester is the
    /// writer that keeps the store's WAL bounded.
    void restart_wal_past(std::int64_t frames) { db_.restart_wal_past(frames); }
    [[nodiscard]] std::uint64_t wal_restarts() const noexcept { return db_.wal_restarts(); }
    [[nodiscard]] std::uint64_t wal_restarts_deferred() const noexcept { return db_.wal_restarts_deferred(); }

private:
    void insert(std::span<const Event> events, const std::optional<Checkpoint>& checkpoint,
                const std::optional<SpoolMark>& mark = std::nullopt);

    sqlite::Database db_;
    sqlite::StatementCache writer_;  // the appending leader's head reads, prepared once
    std::unique_ptr<sqlite::Statement> insert_event_;
    std::unique_ptr<sqlite::Statement> insert_checkpoint_;
};

/// "sqlite:PATH" -> PATH (the audit log lives in the store file).
[[nodiscard]] std::string sqlite_path_from_url(const std::string& url);

}  // namespace kw::core::audit
