#include "core/store/sqlite/migrations.hpp"

#include <array>
#include <string>

#include "core/error.hpp"

namespace kw::core::sqlite {
namespace {

struct Migration {
    int version;
    const char* sql;
};

// Append only: never edit a migration that has shipped.
constexpr std::array kMigrations{
    Migration{1, R"sql(
CREATE TABLE keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    rsa_bits    INTEGER,
    curve       TEXT,
    jwt_alg     TEXT,
    scopes      TEXT NOT NULL DEFAULT '[]',
    owner       TEXT NOT NULL DEFAULT '',
    labels      TEXT NOT NULL DEFAULT '{}',
    policy      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE TABLE key_versions (
    key_id            TEXT NOT NULL REFERENCES keys(id),
    version           INTEGER NOT NULL,
    kid               TEXT NOT NULL UNIQUE,
    state             TEXT NOT NULL,
    is_primary        INTEGER NOT NULL DEFAULT 0,
    residency         TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    state_changed_at  INTEGER NOT NULL,
    wrapped_blob      BLOB,
    public_key        BLOB,
    PRIMARY KEY (key_id, version)
);
-- At most one primary version per key, enforced by the database.
CREATE UNIQUE INDEX key_versions_one_primary ON key_versions(key_id) WHERE is_primary = 1;
CREATE TABLE meta (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
)sql"},
    Migration{2, R"sql(
-- API tokens and provisioning tokens: one row per token (= key version).
-- Only the HMAC digest under a token pepper is kept, never the token.
CREATE TABLE api_tokens (
    kid             TEXT PRIMARY KEY REFERENCES key_versions(kid),
    digest          BLOB NOT NULL UNIQUE,
    pepper_version  INTEGER NOT NULL,
    prefix          TEXT NOT NULL,
    display         TEXT NOT NULL,
    max_uses        INTEGER,
    uses            INTEGER NOT NULL DEFAULT 0,
    last_used_at    INTEGER
);
-- Every lifecycle transition, with its time and who made it.
CREATE TABLE state_changes (
    id          INTEGER PRIMARY KEY,
    kid         TEXT NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX state_changes_kid ON state_changes(kid);
CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    time       INTEGER NOT NULL,
    type       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    key        TEXT NOT NULL,
    kid        TEXT NOT NULL,
    op         TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    mac        TEXT NOT NULL
);
CREATE INDEX audit_events_key ON audit_events(key, seq);
CREATE INDEX audit_events_time ON audit_events(time);
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    head_hash  TEXT NOT NULL,
    time       INTEGER NOT NULL,
    signature  TEXT NOT NULL
);
)sql"},
    Migration{3, R"sql(
-- GRADUAL rotation: the version taking a share of signing traffic.
ALTER TABLE keys ADD COLUMN rollout_kid TEXT;
ALTER TABLE keys ADD COLUMN rollout_share INTEGER NOT NULL DEFAULT 0;
-- Rotations: a persisted state machine per rotation, and its history.
CREATE TABLE rotations (
    id                INTEGER PRIMARY KEY,
    key_id            TEXT NOT NULL REFERENCES keys(id),
    key_name          TEXT NOT NULL,
    strategy          TEXT NOT NULL,
    policy            TEXT NOT NULL DEFAULT '',
    from_kid          TEXT NOT NULL,
    to_kid            TEXT NOT NULL,
    state             TEXT NOT NULL,
    phase             INTEGER NOT NULL DEFAULT 0,
    phase_started_at  INTEGER,
    started_at        INTEGER NOT NULL,
    published_at      INTEGER,
    promoted_at       INTEGER,
    finished_at       INTEGER,
    outcome           TEXT NOT NULL DEFAULT '',
    error             TEXT NOT NULL DEFAULT '',
    params            TEXT NOT NULL DEFAULT '{}'
);
-- At most one unfinished rotation per key.
CREATE UNIQUE INDEX rotations_one_open ON rotations(key_id) WHERE finished_at IS NULL;
CREATE INDEX rotations_key ON rotations(key_name, id);
-- Leases keep two schedulers from working on the same key.
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    owner  TEXT NOT NULL,
    until  INTEGER NOT NULL
);
CREATE TABLE policy_documents (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    text        TEXT NOT NULL,
    applied_at  INTEGER NOT NULL,
    actor       TEXT NOT NULL DEFAULT ''
);
-- Usage-aware rotation asks when a version was last used.
CREATE INDEX audit_events_kid ON audit_events(kid, time);
)sql"},
    Migration{4, R"sql(
-- Credits with refill: max_uses becomes the allowance per refill period.
ALTER TABLE api_tokens ADD COLUMN refill_seconds INTEGER;
ALTER TABLE api_tokens ADD COLUMN period_start INTEGER;
)sql"},
    Migration{5, R"sql(
-- How many bytes of each audit spool the log holds (core/audit/spool.hpp).
CREATE TABLE audit_spools (
    id        TEXT PRIMARY KEY,
    ingested  INTEGER NOT NULL
);
)sql"},
    Migration{6, R"sql(
-- Bumped by every change to a key or a version, by any process, so a process
-- may keep keys in memory and know when to read them again (find_key).
INSERT OR IGNORE INTO meta(name, value) VALUES ('keys_generation', '0');
CREATE TRIGGER keys_generation_insert AFTER INSERT ON keys BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'keys_generation'; END;
CREATE TRIGGER keys_generation_update AFTER UPDATE ON keys BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'keys_generation'; END;
CREATE TRIGGER keys_generation_delete AFTER DELETE ON keys BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'keys_generation'; END;
CREATE TRIGGER versions_generation_insert AFTER INSERT ON key_versions BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'keys_generation'; END;
CREATE TRIGGER versions_generation_update AFTER UPDATE ON key_versions BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'keys_generation'; END;
CREATE TRIGGER versions_generation_delete AFTER DELETE ON key_versions BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'keys_generation'; END;
)sql"},
    Migration{7, R"sql(
-- Tokens join the keys generation, so find_token may answer from memory too.
-- Counting a use (uses, last_used_at, period_start) does not bump it: a
-- cached answer is only ever kept for a token without max_uses, whose count
-- nobody reads from that answer.
CREATE TRIGGER tokens_generation_insert AFTER INSERT ON api_tokens BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'keys_generation'; END;
CREATE TRIGGER tokens_generation_update
    AFTER UPDATE OF kid, digest, pepper_version, prefix, display, max_uses, refill_seconds ON api_tokens BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'keys_generation'; END;
CREATE TRIGGER tokens_generation_delete AFTER DELETE ON api_tokens BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'keys_generation'; END;
)sql"},
    Migration{8, R"sql(
-- Rate limits set through the admin API (PUT /v1/admin/limits). keywardend
-- applies them at start over the configuration's defaults, so a limit an
-- operator set survives a restart until it is removed.
CREATE TABLE rate_limits (
    scope       TEXT NOT NULL CHECK (scope IN ('token_default', 'token', 'key')),
    subject     TEXT NOT NULL,  -- token kid, key name, '' for token_default
    lim         INTEGER NOT NULL CHECK (lim >= 1),
    period_ms   INTEGER NOT NULL CHECK (period_ms >= 1),
    burst       INTEGER NOT NULL CHECK (burst >= 1),
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (scope, subject)
);
)sql"},
    Migration{9, R"sql(
-- Credits refill on a schedule (core/refill.hpp: every N seconds, daily,
-- monthly on a day) with an amount that may differ from the first
-- allowance. refill_seconds is kept for older rows and no longer read.
ALTER TABLE api_tokens ADD COLUMN refill TEXT;
ALTER TABLE api_tokens ADD COLUMN refill_amount INTEGER CHECK (refill_amount IS NULL OR refill_amount >= 1);
ALTER TABLE api_tokens ADD COLUMN refilled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN next_refill_at INTEGER;
UPDATE api_tokens SET refill = 'every:' || refill_seconds, next_refill_at = period_start + refill_seconds
    WHERE refill_seconds IS NOT NULL;
)sql"},
    Migration{10, R"sql(
-- The default limit for keys can be set at run time too (scope
-- 'key_default'). SQLite cannot change a CHECK constraint in place.
CREATE TABLE rate_limits_v10 (
    scope       TEXT NOT NULL CHECK (scope IN ('token_default', 'key_default', 'token', 'key')),
    subject     TEXT NOT NULL,  -- token kid, key name, '' for the defaults
    lim         INTEGER NOT NULL CHECK (lim >= 1),
    period_ms   INTEGER NOT NULL CHECK (period_ms >= 1),
    burst       INTEGER NOT NULL CHECK (burst >= 1),
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (scope, subject)
);
INSERT INTO rate_limits_v10 SELECT scope, subject, lim, period_ms, burst, updated_at, updated_by FROM rate_limits;
DROP TABLE rate_limits;
ALTER TABLE rate_limits_v10 RENAME TO rate_limits;
)sql"},
};

int current_version(Database& db) {
    Statement s(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    s.step();
    return static_cast<int>(s.integer(0));
}

}  // namespace

int latest_schema_version() {
    return kMigrations.back().version;
}

int migrate(Database& db) {
    db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
    int version = current_version(db);
    if (version > latest_schema_version()) {
        throw Error(ErrorKind::store_failure, "store schema version " + std::to_string(version) +
                                                  " is newer than this keywarden (" +
                                                  std::to_string(latest_schema_version()) + "): upgrade keywarden");
    }
    for (const auto& m : kMigrations) {
        if (m.version <= version) continue;
        Transaction tx(db);
        db.exec(m.sql);
        Statement rec(db, "INSERT INTO schema_migrations(version, applied_at) VALUES (?1, strftime('%s','now'))");
        rec.bind(1, static_cast<std::int64_t>(m.version)).run();
        tx.commit();
        version = m.version;
    }
    return version;
}

}  // namespace kw::core::sqlite
