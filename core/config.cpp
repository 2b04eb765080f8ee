#include "core/config.hpp"

#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#define TOML_EXCEPTIONS 1
#include <toml++/toml.h>

#include "core/error.hpp"

namespace kw::core {
namespace {

std::string where(const std::string& file, const toml::source_region& r) {
    std::ostringstream os;
    os << file << ":" << r.begin.line;
    return os.str();
}

[[noreturn]] void bad(const std::string& file, const toml::node& n, const std::string& what) {
    throw Error(ErrorKind::config, where(file, n.source()) + ": " + what);
}

void reject_unknown(const std::string& file, const toml::table& t, const std::string& section,
                    const std::set<std::string>& known) {
    for (const auto& [k, v] : t) {
        if (!known.contains(std::string(k.str()))) {
            bad(file, v, "unknown setting '" + (section.empty() ? "" : section + ".") + std::string(k.str()) + "'");
        }
    }
}

template <typename T>
void read(const std::string& file, const toml::table& t, const char* key, T& out) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return;
    if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::optional<std::string>>) {
        auto v = n->value<std::string>();
        if (!v) bad(file, *n, std::string(key) + " must be a string");
        out = *v;
    } else if constexpr (std::is_same_v<T, double>) {
        auto v = n->value<double>();  // an integer is a number too
        if (!v || !(*v >= 0)) bad(file, *n, std::string(key) + " must be a non-negative number");
        out = *v;
    } else {
        auto v = n->value<std::int64_t>();
        if (!v || *v < 0) bad(file, *n, std::string(key) + " must be a non-negative integer");
        out = static_cast<T>(*v);
    }
}

void apply_file(Config& c, const std::string& file) {
    toml::table root;
    try {
        root = toml::parse_file(file);
    } catch (const toml::parse_error& e) {
        throw Error(ErrorKind::config, where(file, e.source()) + ": " + std::string(e.description()));
    }
    c.source = file;
    reject_unknown(file, root, "", {"hsm", "store", "keys", "audit", "server", "rotation", "alerts", "limits"});
    auto section = [&](const char* name) -> const toml::table* {
        const toml::node* n = root.get(name);
        if (n == nullptr) return nullptr;
        if (!n->is_table()) bad(file, *n, std::string("[") + name + "] must be a table");
        return n->as_table();
    };
    if (const auto* t = section("hsm")) {
        reject_unknown(
            file, *t, "hsm",
            {"module", "token_label", "token_serial", "token_uri", "pin_env", "pin_file", "sessions", "locking"});
        read(file, *t, "module", c.hsm_module);
        read(file, *t, "token_label", c.token_label);
        read(file, *t, "token_serial", c.token_serial);
        read(file, *t, "token_uri", c.token_uri);
        read(file, *t, "pin_env", c.pin_env);
        read(file, *t, "pin_file", c.pin_file);
        read(file, *t, "sessions", c.sessions);
        if (c.sessions == 0) bad(file, *t->get("sessions"), "hsm.sessions must be at least 1");
        std::string locking;
        read(file, *t, "locking", locking);
        if (!locking.empty()) {
            auto l = token::parse_module_locking(locking);
            if (!l) bad(file, *t->get("locking"), "hsm.locking must be \"keywarden\" or \"os\"");
            c.hsm_locking = *l;
        }
        if (c.token_serial || c.token_uri) {
            if (t->get("token_label") == nullptr) c.token_label.reset();
        }
    }
    if (const auto* t = section("store")) {
        reject_unknown(file, *t, "store", {"url", "busy_timeout_ms"});
        read(file, *t, "url", c.store_url);
        read(file, *t, "busy_timeout_ms", c.busy_timeout_ms);
    }
    if (const auto* t = section("keys")) {
        reject_unknown(file, *t, "keys", {"default_residency", "handle_cache_size"});
        std::string residency;
        read(file, *t, "default_residency", residency);
        if (!residency.empty()) {
            auto r = parse_residency(residency);
            if (!r) bad(file, *t->get("default_residency"), "keys.default_residency must be \"token\" or \"wrapped\"");
            c.default_residency = *r;
        }
        read(file, *t, "handle_cache_size", c.handle_cache_size);
    }
    if (const auto* t = section("audit")) {
        reject_unknown(file, *t, "audit", {"checkpoint_every", "checkpoint_seconds", "durability", "ingest_ms"});
        read(file, *t, "ingest_ms", c.ingest_ms);
        if (c.ingest_ms > 1000) bad(file, *t->get("ingest_ms"), "audit.ingest_ms must be at most 1000");
        read(file, *t, "checkpoint_every", c.checkpoint_every);
        read(file, *t, "checkpoint_seconds", c.checkpoint_seconds);
        read(file, *t, "durability", c.durability);
        if (c.durability != "process" && c.durability != "power") {
            bad(file, *t->get("durability"), "audit.durability must be \"process\" or \"power\"");
        }
    }
    if (const auto* t = section("server")) {
        reject_unknown(file, *t, "server",
                       {"listen", "unix_socket", "unix_socket_group", "local_socket", "local_socket_group",
                        "local_max_connections", "usage_flush_ms", "spin_us", "max_body_bytes", "max_header_bytes",
                        "request_timeout_s"});
        read(file, *t, "listen", c.listen);
        read(file, *t, "unix_socket", c.unix_socket);
        read(file, *t, "local_socket", c.local_socket);
        read(file, *t, "unix_socket_group", c.unix_socket_group);
        read(file, *t, "local_socket_group", c.local_socket_group);
        read(file, *t, "local_max_connections", c.local_max_connections);
        read(file, *t, "usage_flush_ms", c.usage_flush_ms);
        if (c.usage_flush_ms < 1) bad(file, *t->get("usage_flush_ms"), "server.usage_flush_ms must be at least 1");
        read(file, *t, "max_body_bytes", c.max_body_bytes);
        if (c.max_body_bytes < 1024 || c.max_body_bytes > (std::int64_t{64} << 20)) {
            bad(file, *t->get("max_body_bytes"), "server.max_body_bytes must be 1024 to 67108864");
        }
        read(file, *t, "max_header_bytes", c.max_header_bytes);
        if (c.max_header_bytes < 1024 || c.max_header_bytes > (std::int64_t{1} << 20)) {
            bad(file, *t->get("max_header_bytes"), "server.max_header_bytes must be 1024 to 1048576");
        }
        read(file, *t, "request_timeout_s", c.request_timeout_s);
        if (c.request_timeout_s < 1 || c.request_timeout_s > 3600) {
            bad(file, *t->get("request_timeout_s"), "server.request_timeout_s must be 1 to 3600");
        }
        read(file, *t, "spin_us", c.spin_us);
        if (c.spin_us < 0 || c.spin_us > 10000) bad(file, *t->get("spin_us"), "server.spin_us must be 0 to 10000");
    }
    if (const auto* t = section("limits")) {
        reject_unknown(file, *t, "limits",
                       {"token_limit", "token_period_ms", "token_burst", "key_limit", "key_period_ms", "key_burst"});
        read(file, *t, "token_limit", c.token_limit);
        read(file, *t, "token_period_ms", c.token_period_ms);
        c.token_burst = c.token_limit;
        read(file, *t, "token_burst", c.token_burst);
        read(file, *t, "key_limit", c.key_limit);
        read(file, *t, "key_period_ms", c.key_period_ms);
        c.key_burst = c.key_limit;
        read(file, *t, "key_burst", c.key_burst);
        for (auto v : {c.token_limit, c.token_period_ms, c.token_burst, c.key_limit, c.key_period_ms, c.key_burst}) {
            if (v < 1) throw Error(ErrorKind::config, file + ": [limits] values must be at least 1");
        }
    }
    if (const auto* t = section("alerts")) {
        reject_unknown(
            file, *t, "alerts",
            {"webhooks", "kinds", "ca_file", "verify_failed_per_minute", "unknown_token_factor", "unknown_token_min"});
        auto strings = [&](const char* key, std::vector<std::string>& out) {
            const toml::node* n = t->get(key);
            if (n == nullptr) return;
            const toml::array* arr = n->as_array();
            if (arr == nullptr) bad(file, *n, std::string("alerts.") + key + " must be an array of strings");
            for (const auto& item : *arr) {
                auto v = item.value<std::string>();
                if (!v) bad(file, item, std::string("alerts.") + key + " must be an array of strings");
                out.push_back(*v);
            }
        };
        strings("webhooks", c.alert_webhooks);
        strings("kinds", c.alert_kinds);
        for (const auto& url : c.alert_webhooks) {
            if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
                bad(file, *t->get("webhooks"), "alert webhook '" + url + "' must start with http:// or https://");
            }
        }
        read(file, *t, "ca_file", c.alert_ca_file);
        read(file, *t, "verify_failed_per_minute", c.verify_failed_per_minute);
        if (c.verify_failed_per_minute < 1) {
            bad(file, *t->get("verify_failed_per_minute"), "alerts.verify_failed_per_minute must be at least 1");
        }
        read(file, *t, "unknown_token_factor", c.unknown_token_factor);
        if (c.unknown_token_factor < 1) {
            bad(file, *t->get("unknown_token_factor"), "alerts.unknown_token_factor must be at least 1");
        }
        read(file, *t, "unknown_token_min", c.unknown_token_min);
        if (c.unknown_token_min < 1)
            bad(file, *t->get("unknown_token_min"), "alerts.unknown_token_min must be at least 1");
    }
    if (const auto* t = section("rotation")) {
        reject_unknown(file, *t, "rotation", {"check_interval", "policy_dir"});
        read(file, *t, "check_interval", c.rotation_check_interval);
        read(file, *t, "policy_dir", c.policy_dir);
    }
}

const char* env(const char* name) {
    const char* v = std::getenv(name);
    return (v != nullptr && *v != '\0') ? v : nullptr;
}

}  // namespace

Config load_config(const std::optional<std::string>& path) {
    Config c;
    std::optional<std::string> file = path;
    if (!file) {
        if (const char* e = env("KEYWARDEN_CONFIG")) file = e;
    }
    if (file) {
        if (!std::filesystem::exists(*file)) throw Error(ErrorKind::config, "config file " + *file + " does not exist");
        apply_file(c, *file);
    } else if (std::filesystem::exists("keywarden.toml")) {
        apply_file(c, "keywarden.toml");
    }
    if (const char* e = env("KEYWARDEN_HSM_MODULE")) c.hsm_module = e;
    if (const char* e = env("KEYWARDEN_TOKEN_LABEL")) c.token_label = e;
    if (const char* e = env("KEYWARDEN_TOKEN_SERIAL")) c.token_serial = e;
    if (const char* e = env("KEYWARDEN_TOKEN_URI")) c.token_uri = e;
    if (const char* e = env("KEYWARDEN_PIN_FILE")) c.pin_file = e;
    if (const char* e = env("KEYWARDEN_STORE_URL")) c.store_url = e;
    if (const char* e = env("KEYWARDEN_HSM_LOCKING")) {
        auto l = token::parse_module_locking(e);
        if (!l) throw Error(ErrorKind::config, "KEYWARDEN_HSM_LOCKING must be \"keywarden\" or \"os\"");
        c.hsm_locking = *l;
    }
    if (const char* e = env("ROTATION_CHECK_INTERVAL")) {
        char* end = nullptr;
        long long v = std::strtoll(e, &end, 10);
        if (end == e || *end != '\0' || v <= 0) {
            throw Error(ErrorKind::config, "ROTATION_CHECK_INTERVAL must be a positive number of seconds");
        }
        c.rotation_check_interval = v;
    }
    return c;
}

token::TokenConfig token_config(const Config& config) {
    token::TokenConfig tc;
    tc.module_path = config.hsm_module;
    tc.selector.label = config.token_label;
    tc.selector.serial = config.token_serial;
    tc.selector.uri = config.token_uri;
    tc.sessions = config.sessions;
    tc.locking = config.hsm_locking;
    return tc;
}

}  // namespace kw::core
