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
#include "token/token.hpp"

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
    // The mutexes the module guards its state with (token/locking.hpp).
    token::ModuleLocking hsm_locking = token::ModuleLocking::keywarden;

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
    // keywardend: spool events and store them every this many ms (0: no
    // spool, each request waits for its own commit). "process" only.
    std::int64_t ingest_ms = 2;

    // [server]
    std::string listen = "127.0.0.1:8443";
    std::string unix_socket;
    // A group (name or number) whose members may connect to unix_socket
    // (mode 0660 instead of 0600); "" for the daemon's user only.
    std::string unix_socket_group;
    // The local binary protocol (docs/local-protocol.md) for the PKCS#11
    // module and the OpenSSL provider: a unix socket, "" disables it.
    std::string local_socket;
    std::string local_socket_group;  // as unix_socket_group, for local_socket
    std::int64_t local_max_connections = 256;
    // HTTP request limits: a bigger body is refused (413) from its
    // Content-Length, bigger headers get 431, and a request must arrive (and
    // its answer be taken) within the timeout (slowloris).
    std::int64_t max_body_bytes = std::int64_t{1} << 20;
    std::int64_t max_header_bytes = std::int64_t{16} * 1024;
    std::int64_t request_timeout_s = 10;
    // Use counts of unlimited API tokens are written in one batch this often;
    // a kill -9 loses at most this much of them (docs/operations.md).
    std::int64_t usage_flush_ms = 1000;
    // HTTP workers look for work this long (yielding the CPU in between)
    // before they sleep: a sleeping thread costs a wake-up per request at
    // moderate load. 0: sleep at once.
    std::int64_t spin_us = 50;

    // [limits]: default GCRA rate limits (a request costs 1 unless it says
    // otherwise); the admin API changes them per token or key at run time.
    std::int64_t token_limit = 100;  // per API token (credential)
    std::int64_t token_period_ms = 1000;
    std::int64_t token_burst = 100;
    std::int64_t key_limit = 1000;  // per managed key
    std::int64_t key_period_ms = 1000;
    std::int64_t key_burst = 1000;

    // [alerts]
    std::vector<std::string> alert_webhooks;      // http(s) URLs that receive every alert kind
    std::string alert_ca_file;                    // CAs https webhooks must chain to ("": the system store)
    std::vector<std::string> alert_kinds;         // limit to these kinds (empty = all)
    std::int64_t verify_failed_per_minute = 100;  // above this a verify_failed_spike alert fires
    // ... and when MALFORMED + NOT_FOUND answers in a minute reach
    // unknown_token_min and exceed unknown_token_factor x their usual rate.
    double unknown_token_factor = 10;
    std::int64_t unknown_token_min = 20;

    // [rotation]
    std::int64_t rotation_check_interval = 60;
    std::string policy_dir;
};

/// Loads the configuration. Throws Error(config) naming file, line and key.
[[nodiscard]] Config load_config(const std::optional<std::string>& path);

/// The [hsm] settings as the token layer takes them.
[[nodiscard]] token::TokenConfig token_config(const Config& config);

}  // namespace kw::core
