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
};

int current_version(Database& db) {
    Statement s(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    s.step();
    return static_cast<int>(s.integer(0));
}

}  // namespace

int latest_schema_version() { return kMigrations.back().version; }

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
