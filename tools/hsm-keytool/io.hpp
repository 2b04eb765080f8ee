#pragma once
// Input and output for keytool commands: whole files or stdin/stdout, binary-safe.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/key.hpp"

namespace kw::keytool {

/// Scopes from repeated and/or comma-separated option values.
[[nodiscard]] std::vector<std::string> split_scopes(const std::vector<std::string>& raw);

/// Reads a file, or stdin when `path` is empty or "-".
[[nodiscard]] std::vector<std::uint8_t> read_input(const std::optional<std::string>& path);
/// Writes to a file (created 0600), or stdout when `path` is empty or "-".
void write_output(const std::optional<std::string>& path, const std::vector<std::uint8_t>& data);

[[nodiscard]] nlohmann::json key_json(const core::ManagedKey& key);
/// "rsa-3072", "ecdsa P-256", "jwt ES256"...
[[nodiscard]] std::string algorithm_text(const core::ManagedKey& key);
/// "active", "revoked", "expired"...
[[nodiscard]] std::string key_status(const core::ManagedKey& key, core::UnixTime now);

}  // namespace kw::keytool
