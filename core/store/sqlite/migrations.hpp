#pragma once
// Numbered schema migrations. Each runs once, in order, in its own
// transaction, and is recorded in schema_migrations; a store newer than this
// binary is refused rather than guessed at.
#include "core/store/sqlite/database.hpp"

namespace kw::core::sqlite {

/// Brings the schema up to date; returns the resulting version.
int migrate(Database& db);
/// The newest migration this binary knows.
[[nodiscard]] int latest_schema_version();

}  // namespace kw::core::sqlite
