#pragma once
// The store: keywarden's own index of keys and versions (name, version, kid ->
// token object id or wrapped blob), so no hot path searches the token.
//
// One interface, one backend per file under store/: sqlite/ now, postgres/
// next. Every method is atomic: it either happens whole or throws
// core::Error, with kind store_locked when another writer holds the store.
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/key.hpp"
#include "core/refill.hpp"

namespace kw::core {

struct StoreStats {
    std::string backend;   // "sqlite"
    std::string location;  // file path or connection target (no password)
    int schema_version = 0;
    int keys_total = 0;
    std::map<std::string, int> keys_by_type;
    std::map<std::string, int> versions_by_state;
};

/// One API or provisioning token: the version row of its key plus this.
struct TokenRecord {
    std::string kid;
    std::vector<std::uint8_t> digest;  // HMAC-SHA256(token pepper v<pepper_version>, token)
    int pepper_version = 1;
    std::string prefix;
    std::string display;  // "kw_live_AbC123..."
    std::optional<std::int64_t> max_uses;
    std::int64_t uses = 0;
    std::optional<UnixTime> last_used_at;
    // Credits with a refill: max_uses is the first allowance; at every
    // refill (core/refill.hpp) `uses` starts again from zero and the
    // allowance becomes refill_amount (max_uses when unset). period_start is
    // when the token was issued: it fixes the phase of an "every" cadence.
    std::optional<RefillSchedule> refill;
    std::optional<std::int64_t> refill_amount;
    bool refilled = false;                   // a refill has happened
    std::optional<UnixTime> next_refill_at;  // the next refill the store knows of
    std::optional<UnixTime> period_start;

    /// A refill is due at `now` (the next use restarts the count).
    [[nodiscard]] bool refill_due(UnixTime now) const { return next_refill_at && now >= *next_refill_at; }
    /// The allowance of the current period.
    [[nodiscard]] std::int64_t allowance(UnixTime now) const {
        return (refilled || refill_due(now)) && refill_amount ? *refill_amount : max_uses.value_or(0);
    }
    /// Uses left in the current period at `now` (nullopt: unlimited).
    [[nodiscard]] std::optional<std::int64_t> remaining(UnixTime now) const {
        if (!max_uses) return std::nullopt;
        const std::int64_t used = refill_due(now) ? 0 : uses;
        return std::max<std::int64_t>(0, allowance(now) - used);
    }
    /// When the allowance is next refilled (nullopt: never).
    [[nodiscard]] std::optional<UnixTime> next_refill(UnixTime now) const {
        if (!refill || !next_refill_at) return std::nullopt;
        return refill_due(now) ? refill->next_after(now, period_start.value_or(0)) : *next_refill_at;
    }
};

/// Uses of one unlimited token counted in memory since the last flush.
struct TokenUsage {
    std::string kid;
    std::int64_t uses = 0;
    UnixTime last_used_at = 0;
};

struct StateChange {
    std::string kid;
    VersionState from = VersionState::active;
    VersionState to = VersionState::active;
    UnixTime at = 0;
    std::string actor;
    std::string reason;
};

/// One rotation: a persisted state machine (see core/rotation/engine.hpp).
struct RotationRecord {
    std::int64_t id = 0;
    std::string key_id;
    std::string key_name;
    std::string strategy;
    std::string policy;
    std::string from_kid;
    std::string to_kid;
    std::string state;  // planned, generated, published, phasing, promoted, done, failed, rolled_back
    int phase = 0;
    std::optional<UnixTime> phase_started_at;
    UnixTime started_at = 0;
    std::optional<UnixTime> published_at;
    std::optional<UnixTime> promoted_at;
    std::optional<UnixTime> finished_at;
    std::string outcome;  // success, failed, rolled_back
    std::string error;
    std::string params;  // JSON snapshot of the policy parameters at start
};

/// A rate limit set through the admin API, kept across restarts.
struct StoredLimit {
    std::string scope;    // "token_default", "token" (subject: token kid), "key" (subject: key name)
    std::string subject;  // "" for token_default
    std::int64_t limit = 0;
    std::int64_t period_ms = 0;
    std::int64_t burst = 0;
    UnixTime updated_at = 0;
    std::string updated_by;  // the admin credential's kid
};

class Store {
public:
    virtual ~Store() = default;

    /// Inserts a key with its versions. Throws Error(already_exists) if the name is taken.
    virtual void create_key(const ManagedKey& key) = 0;
    /// `generation` (optional): set to the store's keys generation, read
    /// before the key: a number that changes whenever any key or version
    /// changes, by any process sharing the store (0 if the store keeps none).
    [[nodiscard]] virtual std::optional<ManagedKey> find_key(std::string_view name,
                                                             std::uint64_t* generation = nullptr) = 0;
    [[nodiscard]] virtual std::vector<ManagedKey> list_keys() = 0;

    virtual void add_version(std::string_view key_id, const KeyVersion& version) = 0;
    virtual void set_version_state(std::string_view kid, VersionState state, UnixTime at) = 0;
    /// Makes `kid` the key's only primary version.
    virtual void set_primary(std::string_view key_id, std::string_view kid) = 0;
    virtual void set_revoked(std::string_view key_id, UnixTime at) = 0;

    /// Moves `kid` from `from` to `to` and records the change, atomically.
    /// Throws Error(not_permitted) if the version is no longer in `from`
    /// (someone else changed it first).
    virtual void transition(const StateChange& change) = 0;
    [[nodiscard]] virtual std::vector<StateChange> state_history(std::string_view key_id) = 0;
    /// Forgets a version's wrapped key material (destroyed state).
    virtual void clear_key_material(std::string_view kid) = 0;

    /// Creates an api_token/provisioning key and its first token together.
    virtual void create_token_key(const ManagedKey& key, const TokenRecord& token) = 0;
    /// Adds another token (a new version) to an existing token key.
    virtual void add_token_version(std::string_view key_id, const KeyVersion& version, const TokenRecord& token) = 0;
    struct TokenMatch {
        ManagedKey key;
        TokenRecord token;
    };
    /// The token with this digest and its key. For a token without max_uses
    /// the answer may come from memory: its `uses` and `last_used_at` can
    /// then be behind (read them with token_record). Changes made through
    /// this store are seen at once; a change committed by another process
    /// may take up to 1 ms to be seen (SQLite store). Null if no token has
    /// this digest. The answer is shared and immutable (no copy per call).
    [[nodiscard]] virtual std::shared_ptr<const TokenMatch> find_token(std::span<const std::uint8_t> digest) = 0;
    [[nodiscard]] virtual std::optional<TokenRecord> token_record(std::string_view kid) = 0;
    /// Spends `cost` uses if the current allowance has that many left; false
    /// (nothing spent) otherwise. When a refill is due at `at`, the count
    /// restarts from this use and the next refill becomes `next_refill`
    /// (the token's schedule after `at`). Atomic: concurrent callers never
    /// overspend.
    [[nodiscard]] virtual bool consume_token_use(std::string_view kid, UnixTime at, std::int64_t cost = 1,
                                                 std::optional<UnixTime> next_refill = std::nullopt) = 0;
    /// Adds uses counted in memory (tokens without max_uses) in one
    /// transaction: all of the batch or nothing.
    virtual void add_token_uses(std::span<const TokenUsage> batch) = 0;
    /// Re-digests a token under a newer pepper.
    virtual void update_token_digest(std::string_view kid, std::span<const std::uint8_t> digest,
                                     int pepper_version) = 0;

    /// Starts a rotation record; throws Error(already_exists) if the key has
    /// an unfinished one. Returns its id.
    virtual std::int64_t create_rotation(const RotationRecord& r) = 0;
    virtual void update_rotation(const RotationRecord& r) = 0;
    [[nodiscard]] virtual std::optional<RotationRecord> open_rotation(std::string_view key_id) = 0;
    [[nodiscard]] virtual std::vector<RotationRecord> open_rotations() = 0;
    /// Newest first; all keys when `key_name` is empty.
    [[nodiscard]] virtual std::vector<RotationRecord> rotation_history(std::string_view key_name,
                                                                       std::size_t limit) = 0;
    virtual void set_rollout(std::string_view key_id, const std::optional<std::string>& kid, int share) = 0;
    /// Takes or renews the named lease until now+ttl unless another owner
    /// holds it unexpired. True when `owner` holds it afterwards.
    [[nodiscard]] virtual bool try_lease(std::string_view name, std::string_view owner, UnixTime now,
                                         std::int64_t ttl) = 0;
    virtual void release_lease(std::string_view name, std::string_view owner) = 0;
    /// Counts of a key's audit events by outcome (usage by outcome); a
    /// sampled rate_limited event counts 1 + the denials it says it suppressed.
    [[nodiscard]] virtual std::map<std::string, std::int64_t> usage_by_outcome(std::string_view key_name) = 0;
    /// When a version last signed or verified (from the audit log), if ever.
    [[nodiscard]] virtual std::optional<UnixTime> last_used(std::string_view kid) = 0;
    virtual void save_policy_document(std::string_view source, std::string_view text, UnixTime at,
                                      std::string_view actor) = 0;
    /// The newest applied policy document: {source, text}.
    [[nodiscard]] virtual std::optional<std::pair<std::string, std::string>> policy_document() = 0;

    /// Inserts or replaces the limit for (scope, subject).
    virtual void put_limit(const StoredLimit& limit) = 0;
    /// Removes it; false when there was none.
    [[nodiscard]] virtual bool remove_limit(std::string_view scope, std::string_view subject) = 0;
    /// Every stored limit, ordered by scope and subject.
    [[nodiscard]] virtual std::vector<StoredLimit> limits() = 0;

    [[nodiscard]] virtual std::optional<std::string> get_meta(std::string_view name) = 0;
    virtual void set_meta(std::string_view name, std::string_view value) = 0;

    [[nodiscard]] virtual StoreStats stats() = 0;
};

struct StoreOptions {
    int busy_timeout_ms = 2000;  // how long to wait for another writer before store_locked
    // false: commits never checkpoint the WAL; a sqlite::WalCheckpointer
    // (keywardend) must then do it in the background.
    bool auto_checkpoint = true;
};

/// Opens the store named by `url`: "sqlite:PATH" or "sqlite://PATH" (a bare
/// path means SQLite too). Creates and migrates it when new.
[[nodiscard]] std::unique_ptr<Store> open_store(const std::string& url, const StoreOptions& options = {});

}  // namespace kw::core
