#pragma once
// The embedded SQLite store: one file, WAL journal, synchronous=NORMAL
// (commits survive a killed process; see docs/architecture.md for power loss).
#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/store/sqlite/database.hpp"
#include "core/store/sqlite/statement_cache.hpp"
#include "core/store/store.hpp"

namespace kw::core::sqlite {

class SqliteStore final : public Store {
public:
    SqliteStore(const std::string& path, const StoreOptions& options);

    void create_key(const ManagedKey& key) override;
    [[nodiscard]] std::optional<ManagedKey> find_key(std::string_view name,
                                                     std::uint64_t* generation = nullptr) override;
    [[nodiscard]] std::vector<ManagedKey> list_keys() override;
    void add_version(std::string_view key_id, const KeyVersion& version) override;
    void set_version_state(std::string_view kid, VersionState state, UnixTime at) override;
    void set_primary(std::string_view key_id, std::string_view kid) override;
    void set_revoked(std::string_view key_id, UnixTime at) override;
    void transition(const StateChange& change) override;
    [[nodiscard]] std::vector<StateChange> state_history(std::string_view key_id) override;
    void clear_key_material(std::string_view kid) override;
    void create_token_key(const ManagedKey& key, const TokenRecord& token) override;
    void add_token_version(std::string_view key_id, const KeyVersion& version, const TokenRecord& token) override;
    [[nodiscard]] std::shared_ptr<const TokenMatch> find_token(std::span<const std::uint8_t> digest) override;
    [[nodiscard]] std::optional<TokenRecord> token_record(std::string_view kid) override;
    [[nodiscard]] bool consume_token_use(std::string_view kid, UnixTime at, std::int64_t cost,
                                         std::optional<UnixTime> next_refill) override;
    void add_token_uses(std::span<const TokenUsage> batch) override;
    void update_token_digest(std::string_view kid, std::span<const std::uint8_t> digest, int pepper_version) override;
    std::int64_t create_rotation(const RotationRecord& r) override;
    void update_rotation(const RotationRecord& r) override;
    [[nodiscard]] std::optional<RotationRecord> open_rotation(std::string_view key_id) override;
    [[nodiscard]] std::vector<RotationRecord> open_rotations() override;
    [[nodiscard]] std::vector<RotationRecord> rotation_history(std::string_view key_name, std::size_t limit) override;
    void set_rollout(std::string_view key_id, const std::optional<std::string>& kid, int share) override;
    [[nodiscard]] bool try_lease(std::string_view name, std::string_view owner, UnixTime now,
                                 std::int64_t ttl) override;
    void release_lease(std::string_view name, std::string_view owner) override;
    [[nodiscard]] std::optional<UnixTime> last_used(std::string_view kid) override;
    [[nodiscard]] std::map<std::string, std::int64_t> usage_by_outcome(std::string_view key_name) override;
    void save_policy_document(std::string_view source, std::string_view text, UnixTime at,
                              std::string_view actor) override;
    [[nodiscard]] std::optional<std::pair<std::string, std::string>> policy_document() override;
    void put_limit(const StoredLimit& limit) override;
    [[nodiscard]] bool remove_limit(std::string_view scope, std::string_view subject) override;
    [[nodiscard]] std::vector<StoredLimit> limits() override;
    [[nodiscard]] std::optional<std::string> get_meta(std::string_view name) override;
    void set_meta(std::string_view name, std::string_view value) override;
    [[nodiscard]] StoreStats stats() override;

    [[nodiscard]] Database& database() noexcept { return db_; }

private:
    void insert_version(std::string_view key_id, const KeyVersion& v);
    void insert_key_row(const ManagedKey& key);
    void insert_token(const TokenRecord& t);
    void load_versions(ManagedKey& key);
    ManagedKey read_key(const Statement& s);
    std::string keys_generation_locked();
    /// Reads the generation and forgets every cached answer if it moved.
    /// Returns it ("" when the store keeps none: cache nothing).
    std::string sync_generation_locked();

    std::mutex mutex_;  // one connection; SQLite serialises writers anyway
    Database db_;
    StatementCache cache_;  // hot statements, prepared once (guarded by mutex_)
    int schema_version_ = 0;
    // find_key's and find_token's answers, valid while meta.keys_generation
    // (bumped by triggers on any change to keys, versions or tokens, by any
    // process) is `keys_generation_`. find_token keeps only tokens without
    // max_uses (a limited token's credits must be read each time), keyed by
    // digest. Guarded by mutex_.
    std::unordered_map<std::string, ManagedKey> keys_;
    std::unordered_map<std::string, std::shared_ptr<const TokenMatch>> tokens_;
    std::string keys_generation_;
    // When keys_generation_ was last read, and this connection's change
    // count then (find_token's freshness window).
    std::chrono::steady_clock::time_point generation_read_at_;
    sqlite3_int64 changes_at_read_ = 0;
};

}  // namespace kw::core::sqlite
