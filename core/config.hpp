#pragma once
// keywarden.toml and its environment overrides.
//
// Precedence, lowest to highest: built-in defaults, the TOML file
// (--config PATH, else $KEYWARDEN_CONFIG, else ./keywarden.toml if present),
// environment variables. Unknown keys are errors, reported with file and line,
// so a typo never silently falls back to a default.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/types.hpp"

namespace kw::core {

struct Config {
    std::string source = "(defaults)";  // file the settings came from

    // [hsm]
    std::string hsm_module;  // "" = SoftHSM's default path
    std::optional<std::string> token_label = std::string("keywarden");
    std::optional<std::string> token_serial;
    std::optional<std::string> token_uri;
    std::string pin_env = "KEYWARDEN_PIN";
    std::optional<std::string> pin_file;
    std::size_t sessions = 2;

    // [store]
    std::string store_url = "sqlite:keywarden.db";
    int busy_timeout_ms = 2000;

    // [keys]
    Residency default_residency = Residency::wrapped;
    std::size_t handle_cache_size = 16384;

    // [audit]
    std::int64_t checkpoint_every = 1000;  // events
    std::int64_t checkpoint_seconds = 60;
    std::string durability = "process";  // or "power"

    // [server]
    std::string listen = "127.0.0.1:8443";
    std::string unix_socket;
    // Use counts of unlimited API tokens are written in one batch this often;
    // a kill -9 loses at most this much of them (docs/operations.md).
    std::int64_t usage_flush_ms = 1000;

    // [alerts]
    std::vector<std::string> alert_webhooks;      // http(s) URLs that receive every alert kind
    std::vector<std::string> alert_kinds;         // limit to these kinds (empty = all)
    std::int64_t verify_failed_per_minute = 100;  // above this a verify_failed_spike alert fires

    // [rotation]
    std::int64_t rotation_check_interval = 60;
    std::string policy_dir;
};

/// Loads the configuration. Throws Error(config) naming file, line and key.
[[nodiscard]] Config load_config(const std::optional<std::string>& path);

}  // namespace kw::core
