#include "core/store/sqlite/sqlite_store.hpp"

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/store/sqlite/migrations.hpp"

namespace kw::core::sqlite {
namespace {

constexpr const char* kKeyColumns =
    "SELECT id, name, type, rsa_bits, curve, jwt_alg, scopes, owner, labels, policy, created_at, expires_at, "
    "revoked_at, rollout_kid, rollout_share FROM keys";

std::string scopes_json(const std::vector<std::string>& scopes) {
    return nlohmann::json(scopes).dump();
}
std::string labels_json(const std::map<std::string, std::string>& labels) {
    return nlohmann::json(labels).dump();
}

}  // namespace

SqliteStore::SqliteStore(const std::string& path, const StoreOptions& options)
    : db_(path, options.busy_timeout_ms), cache_(db_) {
    db_.exec("PRAGMA journal_mode=WAL");
    db_.exec("PRAGMA synchronous=NORMAL");
    db_.exec("PRAGMA foreign_keys=ON");
    if (!options.auto_checkpoint) sqlite3_wal_autocheckpoint(db_.get(), 0);
    schema_version_ = migrate(db_);
}

void SqliteStore::insert_version(std::string_view key_id, const KeyVersion& v) {
    Statement s(db_,
                "INSERT INTO key_versions(key_id, version, kid, state, is_primary, residency, created_at, "
                "state_changed_at, wrapped_blob, public_key) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)");
    s.bind(1, key_id)
        .bind(2, static_cast<std::int64_t>(v.version))
        .bind(3, v.kid)
        .bind(4, to_string(v.state))
        .bind(5, static_cast<std::int64_t>(v.primary ? 1 : 0))
        .bind(6, to_string(v.residency))
        .bind(7, v.created_at)
        .bind(8, v.state_changed_at)
        .bind(9, std::span<const std::uint8_t>(v.wrapped_blob))
        .bind(10, std::span<const std::uint8_t>(v.public_key));
    s.run();
}

void SqliteStore::insert_key_row(const ManagedKey& key) {
    {
        Statement exists(db_, "SELECT 1 FROM keys WHERE name = ?1");
        exists.bind(1, key.name);
        if (exists.step()) throw Error(ErrorKind::already_exists, "a key named '" + key.name + "' already exists");
    }
    Statement s(db_,
                "INSERT INTO keys(id, name, type, rsa_bits, curve, jwt_alg, scopes, owner, labels, policy, created_at, "
                "expires_at, revoked_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)");
    s.bind(1, key.id).bind(2, key.name).bind(3, to_string(key.type));
    if (key.rsa_bits != 0) {
        s.bind(4, static_cast<std::int64_t>(key.rsa_bits));
    } else {
        s.bind_null(4);
    }
    if (key.curve) {
        s.bind(5, to_string(*key.curve));
    } else {
        s.bind_null(5);
    }
    if (key.jwt_alg) {
        s.bind(6, to_string(*key.jwt_alg));
    } else {
        s.bind_null(6);
    }
    s.bind(7, scopes_json(key.scopes))
        .bind(8, key.owner)
        .bind(9, labels_json(key.labels))
        .bind(10, key.policy)
        .bind(11, key.created_at)
        .bind(12, key.expires_at)
        .bind(13, key.revoked_at);
    s.run();
    for (const auto& v : key.versions) insert_version(key.id, v);
}

void SqliteStore::create_key(const ManagedKey& key) {
    std::lock_guard lock(mutex_);
    Transaction tx(db_);
    insert_key_row(key);
    tx.commit();
}

void SqliteStore::insert_token(const TokenRecord& t) {
    Statement s(db_,
                "INSERT INTO api_tokens(kid, digest, pepper_version, prefix, display, max_uses, uses, last_used_at, "
                "refill, refill_amount, refilled, next_refill_at, period_start) "
                "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)");
    s.bind(1, t.kid)
        .bind(2, std::span<const std::uint8_t>(t.digest))
        .bind(3, static_cast<std::int64_t>(t.pepper_version))
        .bind(4, t.prefix)
        .bind(5, t.display)
        .bind(6, t.max_uses)
        .bind(7, t.uses)
        .bind(8, t.last_used_at);
    const std::string refill = t.refill ? t.refill->to_string() : std::string();
    if (t.refill) {
        s.bind(9, refill);
    } else {
        s.bind_null(9);
    }
    s.bind(10, t.refill_amount)
        .bind(11, static_cast<std::int64_t>(t.refilled ? 1 : 0))
        .bind(12, t.next_refill_at)
        .bind(13, t.period_start);
    s.run();
}

void SqliteStore::create_token_key(const ManagedKey& key, const TokenRecord& token) {
    std::lock_guard lock(mutex_);
    Transaction tx(db_);
    insert_key_row(key);
    insert_token(token);
    tx.commit();
}

void SqliteStore::add_token_version(std::string_view key_id, const KeyVersion& version, const TokenRecord& token) {
    std::lock_guard lock(mutex_);
    Transaction tx(db_);
    insert_version(key_id, version);
    insert_token(token);
    tx.commit();
}

namespace {
constexpr const char* kTokenColumns =
    "SELECT kid, digest, pepper_version, prefix, display, max_uses, uses, last_used_at, refill, refill_amount, "
    "refilled, next_refill_at, period_start FROM api_tokens";
TokenRecord read_token(const Statement& s) {
    TokenRecord t;
    t.kid = s.text(0);
    t.digest = s.blob(1);
    t.pepper_version = static_cast<int>(s.integer(2));
    t.prefix = s.text(3);
    t.display = s.text(4);
    t.max_uses = s.maybe_integer(5);
    t.uses = s.integer(6);
    t.last_used_at = s.maybe_integer(7);
    if (!s.is_null(8)) t.refill = RefillSchedule::parse(s.text(8));
    t.refill_amount = s.maybe_integer(9);
    t.refilled = s.integer(10) != 0;
    t.next_refill_at = s.maybe_integer(11);
    t.period_start = s.maybe_integer(12);
    return t;
}
}  // namespace

std::shared_ptr<const Store::TokenMatch> SqliteStore::find_token(std::span<const std::uint8_t> digest) {
    std::lock_guard lock(mutex_);
    // Reading the generation is a read transaction (about 5 us, a good part
    // of a verification): it is skipped for a while after the last read,
    // unless this connection has written since. Another process's change is
    // therefore seen within kTokenFresh; this process's at once.
    constexpr auto kTokenFresh = std::chrono::milliseconds(1);
    const bool fresh = !keys_generation_.empty() &&
                       std::chrono::steady_clock::now() - generation_read_at_ < kTokenFresh &&
                       sqlite3_total_changes64(db_.get()) == changes_at_read_;
    const std::string generation = fresh ? keys_generation_ : sync_generation_locked();
    std::string digest_key(reinterpret_cast<const char*>(digest.data()), digest.size());
    if (auto it = tokens_.find(digest_key); it != tokens_.end()) return it->second;
    static const std::string by_digest = std::string(kTokenColumns) + " WHERE digest = ?1";
    static const std::string key_of_kid =
        std::string(kKeyColumns) + " WHERE id = (SELECT key_id FROM key_versions WHERE kid = ?1)";
    auto s = cache_.get(by_digest);
    s->bind(1, digest);
    if (!s->step()) return nullptr;
    TokenRecord t = read_token(*s);
    auto k = cache_.get(key_of_kid);
    k->bind(1, t.kid);
    if (!k->step()) return nullptr;
    ManagedKey key = read_key(*k);
    load_versions(key);
    auto match = std::make_shared<const TokenMatch>(TokenMatch{std::move(key), std::move(t)});
    if (!generation.empty() && !match->token.max_uses) {
        constexpr std::size_t kMaxCached = 65536;  // a bound, not an LRU: a full map starts over
        if (tokens_.size() >= kMaxCached) tokens_.clear();
        tokens_.emplace(std::move(digest_key), match);
    }
    return match;
}

std::optional<TokenRecord> SqliteStore::token_record(std::string_view kid) {
    std::lock_guard lock(mutex_);
    static const std::string by_kid = std::string(kTokenColumns) + " WHERE kid = ?1";
    auto s = cache_.get(by_kid);
    s->bind(1, kid);
    if (!s->step()) return std::nullopt;
    return read_token(*s);
}

bool SqliteStore::consume_token_use(std::string_view kid, UnixTime at, std::int64_t cost,
                                    std::optional<UnixTime> next_refill) {
    std::lock_guard lock(mutex_);
    // One statement, so concurrent verifications can never overspend. Every
    // expression reads the row as it was. "next_refill_at IS NOT NULL AND
    // ?2 >= next_refill_at" is a refill that has come: the count restarts at
    // this use, against the refill amount.
    static const std::string sql = R"sql(
UPDATE api_tokens SET
  uses           = CASE WHEN next_refill_at IS NOT NULL AND ?2 >= next_refill_at THEN ?3 ELSE uses + ?3 END,
  refilled       = CASE WHEN next_refill_at IS NOT NULL AND ?2 >= next_refill_at THEN 1 ELSE refilled END,
  next_refill_at = CASE WHEN next_refill_at IS NOT NULL AND ?2 >= next_refill_at THEN ?4 ELSE next_refill_at END,
  last_used_at   = ?2
WHERE kid = ?1 AND (
  max_uses IS NULL
  OR (next_refill_at IS NOT NULL AND ?2 >= next_refill_at AND ?3 <= COALESCE(refill_amount, max_uses))
  OR (NOT (next_refill_at IS NOT NULL AND ?2 >= next_refill_at)
      AND uses + ?3 <= CASE WHEN refilled = 1 THEN COALESCE(refill_amount, max_uses) ELSE max_uses END))
)sql";
    auto s = cache_.get(sql);
    s->bind(1, kid).bind(2, at).bind(3, cost).bind(4, next_refill).run();
    return sqlite3_changes(db_.get()) == 1;
}

void SqliteStore::add_token_uses(std::span<const TokenUsage> batch) {
    if (batch.empty()) return;
    std::lock_guard lock(mutex_);
    Transaction tx(db_);
    for (const auto& u : batch) {
        // MAX: a flush never moves last_used_at backwards (another process,
        // or a synchronous consume_token_use, may have written a later time).
        auto s = cache_.get(
            "UPDATE api_tokens SET uses = uses + ?2, "
            "last_used_at = MAX(COALESCE(last_used_at, ?3), ?3) WHERE kid = ?1");
        s->bind(1, u.kid).bind(2, u.uses).bind(3, u.last_used_at).run();
    }
    tx.commit();
}

void SqliteStore::update_token_digest(std::string_view kid, std::span<const std::uint8_t> digest, int pepper_version) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "UPDATE api_tokens SET digest = ?2, pepper_version = ?3 WHERE kid = ?1");
    s.bind(1, kid).bind(2, digest).bind(3, static_cast<std::int64_t>(pepper_version)).run();
}

void SqliteStore::transition(const StateChange& c) {
    std::lock_guard lock(mutex_);
    Transaction tx(db_);
    Statement s(db_, "UPDATE key_versions SET state = ?1, state_changed_at = ?2 WHERE kid = ?3 AND state = ?4");
    s.bind(1, to_string(c.to)).bind(2, c.at).bind(3, c.kid).bind(4, to_string(c.from)).run();
    if (sqlite3_changes(db_.get()) == 0) {
        throw Error(ErrorKind::not_permitted,
                    "version " + c.kid + " is no longer " + std::string(to_string(c.from)) + " (changed concurrently)");
    }
    Statement h(db_,
                "INSERT INTO state_changes(kid, from_state, to_state, at, actor, reason) VALUES (?1,?2,?3,?4,?5,?6)");
    h.bind(1, c.kid)
        .bind(2, to_string(c.from))
        .bind(3, to_string(c.to))
        .bind(4, c.at)
        .bind(5, c.actor)
        .bind(6, c.reason)
        .run();
    tx.commit();
}

std::vector<StateChange> SqliteStore::state_history(std::string_view key_id) {
    std::lock_guard lock(mutex_);
    Statement s(db_,
                "SELECT c.kid, c.from_state, c.to_state, c.at, c.actor, c.reason FROM state_changes c "
                "JOIN key_versions v ON v.kid = c.kid WHERE v.key_id = ?1 ORDER BY c.id");
    s.bind(1, key_id);
    std::vector<StateChange> out;
    while (s.step()) {
        out.push_back({s.text(0), parse_version_state(s.text(1)).value_or(VersionState::active),
                       parse_version_state(s.text(2)).value_or(VersionState::active), s.integer(3), s.text(4),
                       s.text(5)});
    }
    return out;
}

void SqliteStore::clear_key_material(std::string_view kid) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "UPDATE key_versions SET wrapped_blob = NULL WHERE kid = ?1");
    s.bind(1, kid).run();
}

ManagedKey SqliteStore::read_key(const Statement& s) {
    ManagedKey k;
    k.id = s.text(0);
    k.name = s.text(1);
    k.type = parse_key_type(s.text(2)).value_or(KeyType::hmac);
    k.rsa_bits = static_cast<unsigned>(s.maybe_integer(3).value_or(0));
    if (!s.is_null(4)) k.curve = parse_curve(s.text(4));
    if (!s.is_null(5)) k.jwt_alg = parse_jwt_alg(s.text(5));
    k.scopes = nlohmann::json::parse(s.text(6)).get<std::vector<std::string>>();
    k.owner = s.text(7);
    k.labels = nlohmann::json::parse(s.text(8)).get<std::map<std::string, std::string>>();
    k.policy = s.text(9);
    k.created_at = s.integer(10);
    k.expires_at = s.maybe_integer(11);
    k.revoked_at = s.maybe_integer(12);
    if (!s.is_null(13)) k.rollout_kid = s.text(13);
    k.rollout_share = static_cast<int>(s.integer(14));
    return k;
}

void SqliteStore::load_versions(ManagedKey& key) {
    auto s = cache_.get(
        "SELECT version, kid, state, is_primary, residency, created_at, state_changed_at, wrapped_blob, "
        "public_key FROM key_versions WHERE key_id = ?1 ORDER BY version");
    s->bind(1, key.id);
    while (s->step()) {
        KeyVersion v;
        v.version = static_cast<int>(s->integer(0));
        v.kid = s->text(1);
        v.state = parse_version_state(s->text(2)).value_or(VersionState::compromised);
        v.primary = s->integer(3) != 0;
        v.residency = parse_residency(s->text(4)).value_or(Residency::wrapped);
        v.created_at = s->integer(5);
        v.state_changed_at = s->integer(6);
        v.wrapped_blob = s->blob(7);
        v.public_key = s->blob(8);
        key.versions.push_back(std::move(v));
    }
}

std::string SqliteStore::keys_generation_locked() {
    auto g = cache_.get("SELECT value FROM meta WHERE name = 'keys_generation'");
    return g->step() ? g->text(0) : std::string();
}

std::string SqliteStore::sync_generation_locked() {
    // The generation is read before the row it vouches for: a change
    // committed in between makes the next call see a newer generation and
    // read again, never keeps an old row under a new generation.
    generation_read_at_ = std::chrono::steady_clock::now();
    changes_at_read_ = sqlite3_total_changes64(db_.get());
    std::string generation = keys_generation_locked();
    if (generation.empty() || generation != keys_generation_) {
        keys_.clear();
        tokens_.clear();
        keys_generation_ = generation;
    }
    return generation;
}

std::optional<ManagedKey> SqliteStore::find_key(std::string_view name, std::uint64_t* generation_out) {
    std::lock_guard lock(mutex_);
    const std::string generation = sync_generation_locked();
    if (generation_out != nullptr) *generation_out = generation.empty() ? 0 : std::stoull(generation);
    if (auto it = keys_.find(std::string(name)); it != keys_.end()) return it->second;
    static const std::string by_name = std::string(kKeyColumns) + " WHERE name = ?1";
    auto s = cache_.get(by_name);
    s->bind(1, name);
    if (!s->step()) return std::nullopt;
    ManagedKey key = read_key(*s);
    load_versions(key);
    if (!generation.empty()) {
        constexpr std::size_t kMaxCached = 4096;  // a bound, not an LRU: a full map starts over
        if (keys_.size() >= kMaxCached) keys_.clear();
        keys_.emplace(key.name, key);
    }
    return key;
}

std::vector<ManagedKey> SqliteStore::list_keys() {
    std::lock_guard lock(mutex_);
    Statement s(db_, (std::string(kKeyColumns) + " ORDER BY name").c_str());
    std::vector<ManagedKey> keys;
    while (s.step()) keys.push_back(read_key(s));
    for (auto& k : keys) load_versions(k);
    return keys;
}

void SqliteStore::add_version(std::string_view key_id, const KeyVersion& version) {
    std::lock_guard lock(mutex_);
    Transaction tx(db_);
    insert_version(key_id, version);
    tx.commit();
}

void SqliteStore::set_version_state(std::string_view kid, VersionState state, UnixTime at) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "UPDATE key_versions SET state = ?1, state_changed_at = ?2 WHERE kid = ?3");
    s.bind(1, to_string(state)).bind(2, at).bind(3, kid).run();
    if (sqlite3_changes(db_.get()) == 0)
        throw Error(ErrorKind::not_found, "no key version with kid " + std::string(kid));
}

void SqliteStore::set_primary(std::string_view key_id, std::string_view kid) {
    std::lock_guard lock(mutex_);
    Transaction tx(db_);
    Statement clear(db_, "UPDATE key_versions SET is_primary = 0 WHERE key_id = ?1");
    clear.bind(1, key_id).run();
    Statement set(db_, "UPDATE key_versions SET is_primary = 1 WHERE key_id = ?1 AND kid = ?2");
    set.bind(1, key_id).bind(2, kid).run();
    if (sqlite3_changes(db_.get()) == 0)
        throw Error(ErrorKind::not_found, "no key version with kid " + std::string(kid));
    tx.commit();
}

void SqliteStore::set_revoked(std::string_view key_id, UnixTime at) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "UPDATE keys SET revoked_at = ?1 WHERE id = ?2");
    s.bind(1, at).bind(2, key_id).run();
    if (sqlite3_changes(db_.get()) == 0) throw Error(ErrorKind::not_found, "no key with id " + std::string(key_id));
}

namespace {
constexpr const char* kRotationColumns =
    "SELECT id, key_id, key_name, strategy, policy, from_kid, to_kid, state, phase, phase_started_at, started_at, "
    "published_at, promoted_at, finished_at, outcome, error, params FROM rotations";

RotationRecord read_rotation(const Statement& s) {
    RotationRecord r;
    r.id = s.integer(0);
    r.key_id = s.text(1);
    r.key_name = s.text(2);
    r.strategy = s.text(3);
    r.policy = s.text(4);
    r.from_kid = s.text(5);
    r.to_kid = s.text(6);
    r.state = s.text(7);
    r.phase = static_cast<int>(s.integer(8));
    r.phase_started_at = s.maybe_integer(9);
    r.started_at = s.integer(10);
    r.published_at = s.maybe_integer(11);
    r.promoted_at = s.maybe_integer(12);
    r.finished_at = s.maybe_integer(13);
    r.outcome = s.text(14);
    r.error = s.text(15);
    r.params = s.text(16);
    return r;
}

void bind_rotation(Statement& s, const RotationRecord& r) {
    s.bind(1, r.key_id)
        .bind(2, r.key_name)
        .bind(3, r.strategy)
        .bind(4, r.policy)
        .bind(5, r.from_kid)
        .bind(6, r.to_kid)
        .bind(7, r.state)
        .bind(8, static_cast<std::int64_t>(r.phase))
        .bind(9, r.phase_started_at)
        .bind(10, r.started_at)
        .bind(11, r.published_at)
        .bind(12, r.promoted_at)
        .bind(13, r.finished_at)
        .bind(14, r.outcome)
        .bind(15, r.error)
        .bind(16, r.params);
}
}  // namespace

std::int64_t SqliteStore::create_rotation(const RotationRecord& r) {
    std::lock_guard lock(mutex_);
    Transaction tx(db_);
    {
        Statement open(db_, "SELECT id FROM rotations WHERE key_id = ?1 AND finished_at IS NULL");
        open.bind(1, r.key_id);
        if (open.step()) {
            throw Error(ErrorKind::already_exists, "a rotation of '" + r.key_name + "' is already in progress (id " +
                                                       std::to_string(open.integer(0)) + ")");
        }
    }
    Statement s(db_,
                "INSERT INTO rotations(key_id, key_name, strategy, policy, from_kid, to_kid, state, phase, "
                "phase_started_at, started_at, published_at, promoted_at, finished_at, outcome, error, params) "
                "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)");
    bind_rotation(s, r);
    s.run();
    std::int64_t id = sqlite3_last_insert_rowid(db_.get());
    tx.commit();
    return id;
}

void SqliteStore::update_rotation(const RotationRecord& r) {
    std::lock_guard lock(mutex_);
    Statement s(
        db_,
        "UPDATE rotations SET key_id=?1, key_name=?2, strategy=?3, policy=?4, from_kid=?5, to_kid=?6, state=?7, "
        "phase=?8, phase_started_at=?9, started_at=?10, published_at=?11, promoted_at=?12, finished_at=?13, "
        "outcome=?14, error=?15, params=?16 WHERE id=?17");
    bind_rotation(s, r);
    s.bind(17, r.id).run();
}

std::optional<RotationRecord> SqliteStore::open_rotation(std::string_view key_id) {
    std::lock_guard lock(mutex_);
    Statement s(db_, (std::string(kRotationColumns) + " WHERE key_id = ?1 AND finished_at IS NULL").c_str());
    s.bind(1, key_id);
    if (!s.step()) return std::nullopt;
    return read_rotation(s);
}

std::vector<RotationRecord> SqliteStore::open_rotations() {
    std::lock_guard lock(mutex_);
    Statement s(db_, (std::string(kRotationColumns) + " WHERE finished_at IS NULL ORDER BY id").c_str());
    std::vector<RotationRecord> out;
    while (s.step()) out.push_back(read_rotation(s));
    return out;
}

std::vector<RotationRecord> SqliteStore::rotation_history(std::string_view key_name, std::size_t limit) {
    std::lock_guard lock(mutex_);
    std::string sql =
        std::string(kRotationColumns) + (key_name.empty() ? "" : " WHERE key_name = ?1") + " ORDER BY id DESC LIMIT ?2";
    Statement s(db_, sql.c_str());
    if (!key_name.empty()) s.bind(1, key_name);
    s.bind(2, static_cast<std::int64_t>(limit));
    std::vector<RotationRecord> out;
    while (s.step()) out.push_back(read_rotation(s));
    return out;
}

void SqliteStore::set_rollout(std::string_view key_id, const std::optional<std::string>& kid, int share) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "UPDATE keys SET rollout_kid = ?2, rollout_share = ?3 WHERE id = ?1");
    s.bind(1, key_id);
    if (kid) {
        s.bind(2, *kid);
    } else {
        s.bind_null(2);
    }
    s.bind(3, static_cast<std::int64_t>(share)).run();
}

bool SqliteStore::try_lease(std::string_view name, std::string_view owner, UnixTime now, std::int64_t ttl) {
    std::lock_guard lock(mutex_);
    Statement s(db_,
                "INSERT INTO leases(name, owner, until) VALUES (?1, ?2, ?3) "
                "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
                "WHERE leases.until < ?4 OR leases.owner = excluded.owner");
    s.bind(1, name).bind(2, owner).bind(3, now + ttl).bind(4, now).run();
    return sqlite3_changes(db_.get()) == 1;
}

void SqliteStore::release_lease(std::string_view name, std::string_view owner) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "DELETE FROM leases WHERE name = ?1 AND owner = ?2");
    s.bind(1, name).bind(2, owner).run();
}

std::map<std::string, std::int64_t> SqliteStore::usage_by_outcome(std::string_view key_name) {
    std::lock_guard lock(mutex_);
    // Rate-limit denials are audited sampled: each rate_limited event stands
    // for itself plus the denials suppressed before it.
    Statement s(db_,
                "SELECT outcome, SUM(CASE WHEN type = 'rate_limited' "
                "THEN 1 + COALESCE(json_extract(details, '$.suppressed'), 0) ELSE 1 END) "
                "FROM audit_events WHERE key = ?1 AND type IN "
                "('key_used', 'verify_failed', 'rate_limited') GROUP BY outcome");
    s.bind(1, key_name);
    std::map<std::string, std::int64_t> out;
    while (s.step()) out[s.text(0)] = s.integer(1);
    return out;
}

std::optional<UnixTime> SqliteStore::last_used(std::string_view kid) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "SELECT MAX(time) FROM audit_events WHERE kid = ?1 AND type = 'key_used'");
    s.bind(1, kid);
    if (!s.step() || s.is_null(0)) return std::nullopt;
    return s.integer(0);
}

void SqliteStore::save_policy_document(std::string_view source, std::string_view text, UnixTime at,
                                       std::string_view actor) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "INSERT INTO policy_documents(source, text, applied_at, actor) VALUES (?1, ?2, ?3, ?4)");
    s.bind(1, source).bind(2, text).bind(3, at).bind(4, actor).run();
}

std::optional<std::pair<std::string, std::string>> SqliteStore::policy_document() {
    std::lock_guard lock(mutex_);
    Statement s(db_, "SELECT source, text FROM policy_documents ORDER BY id DESC LIMIT 1");
    if (!s.step()) return std::nullopt;
    return std::make_pair(s.text(0), s.text(1));
}

void SqliteStore::put_limit(const StoredLimit& l) {
    std::lock_guard lock(mutex_);
    Statement s(db_,
                "INSERT INTO rate_limits(scope, subject, lim, period_ms, burst, updated_at, updated_by) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(scope, subject) DO UPDATE SET lim = excluded.lim, "
                "period_ms = excluded.period_ms, burst = excluded.burst, updated_at = excluded.updated_at, "
                "updated_by = excluded.updated_by");
    s.bind(1, l.scope)
        .bind(2, l.subject)
        .bind(3, l.limit)
        .bind(4, l.period_ms)
        .bind(5, l.burst)
        .bind(6, l.updated_at)
        .bind(7, l.updated_by)
        .run();
}

bool SqliteStore::remove_limit(std::string_view scope, std::string_view subject) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "DELETE FROM rate_limits WHERE scope = ?1 AND subject = ?2");
    s.bind(1, scope).bind(2, subject).run();
    return sqlite3_changes(db_.get()) == 1;
}

std::vector<StoredLimit> SqliteStore::limits() {
    std::lock_guard lock(mutex_);
    Statement s(db_,
                "SELECT scope, subject, lim, period_ms, burst, updated_at, updated_by FROM rate_limits "
                "ORDER BY scope, subject");
    std::vector<StoredLimit> out;
    while (s.step()) {
        StoredLimit l;
        l.scope = s.text(0);
        l.subject = s.text(1);
        l.limit = s.integer(2);
        l.period_ms = s.integer(3);
        l.burst = s.integer(4);
        l.updated_at = s.integer(5);
        l.updated_by = s.text(6);
        out.push_back(std::move(l));
    }
    return out;
}

std::optional<std::string> SqliteStore::get_meta(std::string_view name) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "SELECT value FROM meta WHERE name = ?1");
    s.bind(1, name);
    if (!s.step()) return std::nullopt;
    return s.text(0);
}

void SqliteStore::set_meta(std::string_view name, std::string_view value) {
    std::lock_guard lock(mutex_);
    Statement s(db_,
                "INSERT INTO meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value");
    s.bind(1, name).bind(2, value).run();
}

StoreStats SqliteStore::stats() {
    std::lock_guard lock(mutex_);
    StoreStats st;
    st.backend = "sqlite";
    st.location = db_.path();
    st.schema_version = schema_version_;
    Statement by_type(db_, "SELECT type, COUNT(*) FROM keys GROUP BY type");
    while (by_type.step()) {
        st.keys_by_type[by_type.text(0)] = static_cast<int>(by_type.integer(1));
        st.keys_total += static_cast<int>(by_type.integer(1));
    }
    Statement by_state(db_, "SELECT state, COUNT(*) FROM key_versions GROUP BY state");
    while (by_state.step()) st.versions_by_state[by_state.text(0)] = static_cast<int>(by_state.integer(1));
    return st;
}

}  // namespace kw::core::sqlite
