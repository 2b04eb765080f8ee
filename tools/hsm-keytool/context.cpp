#include "tools/hsm-keytool/context.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/audit/sqlite_sink.hpp"
#include "core/error.hpp"
#include "token/error.hpp"
#include "token/pin.hpp"

namespace kw::keytool {

Context::Context(std::optional<std::string> config_path)
    : config_path_(std::move(config_path)), config_(core::load_config(config_path_)) {}

Context::~Context() {
    engine_.reset();
    tokens_.reset();
    keys_.reset();
    audit_log_.reset();  // drains pending events
    audit_keys_.reset();
    audit_sink_.reset();
    store_.reset();
    token_.reset();
}

token::Token& Context::token() {
    if (!token_) {
        token_ = std::make_unique<token::Token>(core::token_config(config_));
    }
    return *token_;
}

token::Token& Context::logged_in_token() {
    token::Token& t = token();
    if (!t.logged_in()) {
        token::PinSource source;
        source.env_var = config_.pin_env;
        source.file = config_.pin_file;
        source.allow_prompt = true;
        try {
            t.login(token::read_pin(source));
        } catch (const token::Pkcs11Error& e) {
            note_login_failure(e.name());
            throw;
        }
    }
    return t;
}

core::Store& Context::store() {
    if (!store_) store_ = core::open_store(config_.store_url, core::StoreOptions{config_.busy_timeout_ms});
    return *store_;
}

const core::RootKeys& Context::roots() {
    if (!roots_) roots_ = core::load_root_keys(logged_in_token());
    return *roots_;
}

// A failed C_Login cannot be audited at once: the audit MAC key is in the
// token, which just refused us. The failure is noted in a 0600 file next to
// the store and written to the audit log by the next process that logs in.
std::string Context::login_failure_file() const {
    return core::audit::sqlite_path_from_url(config_.store_url) + ".login-failures";
}

void Context::note_login_failure(const std::string& rv) {
    int fd = ::open(login_failure_file().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return;  // best effort: the login already failed loudly
    const std::string line = nlohmann::json{{"time", clock_.now()}, {"actor", actor()}, {"rv", rv}}.dump() + "\n";
    (void)!::write(fd, line.data(), line.size());
    ::close(fd);
}

void Context::replay_login_failures() {
    const std::string file = login_failure_file();
    const std::string claimed = file + "." + std::to_string(getpid());
    if (std::rename(file.c_str(), claimed.c_str()) != 0) return;  // none pending
    std::ifstream in(claimed);
    std::string line;
    while (std::getline(in, line)) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded()) continue;
        keys_->audit(core::audit::EventType::admin_login_failed, "", "", "login", j.value("rv", "unknown"),
                     {{"tool", "hsm-keytool"}, {"at", j.value("time", 0)}, {"by", j.value("actor", "")}});
    }
    std::remove(claimed.c_str());
}

std::string Context::actor() {
    const passwd* pw = getpwuid(geteuid());
    return std::string("cli:") + (pw != nullptr ? pw->pw_name : std::to_string(geteuid()));
}

core::audit::SqliteSink& Context::audit_sink() {
    if (!audit_sink_) {
        (void)store();  // runs migrations first
        if (config_.store_url.rfind("postgres", 0) == 0) {
            throw core::Error(core::ErrorKind::config, "audit log on PostgreSQL is not built yet");
        }
        audit_sink_ = std::make_unique<core::audit::SqliteSink>(
            core::audit::sqlite_path_from_url(config_.store_url),
            config_.durability == "power" ? core::audit::Durability::power : core::audit::Durability::process,
            config_.busy_timeout_ms);
    }
    return *audit_sink_;
}

core::audit::Log& Context::audit() {
    if (!audit_log_) {
        auto& sink = audit_sink();
        audit_keys_ = std::make_unique<core::audit::Keys>(logged_in_token(), roots());
        core::audit::LogOptions o;
        o.checkpoint_every = static_cast<std::uint64_t>(config_.checkpoint_every);
        o.checkpoint_seconds = config_.checkpoint_seconds;
        // Events a crashed keywardend left in its spool are stored first.
        o.spool_store_path = core::audit::sqlite_path_from_url(config_.store_url);
        audit_log_ = std::make_unique<core::audit::Log>(sink, *audit_keys_, clock_, o);
    }
    return *audit_log_;
}

core::KeyService& Context::keys() {
    if (!keys_) {
        const auto& r = roots();
        keys_ = std::make_unique<core::KeyService>(logged_in_token(), store(), r, clock_, audit(), actor(),
                                                   config_.handle_cache_size);
        keys_->audit(core::audit::EventType::admin_login, "", "", "login", "ok", {{"tool", "hsm-keytool"}});
        replay_login_failures();
    }
    return *keys_;
}

}  // namespace kw::keytool

namespace kw::keytool {

core::tokens::TokenService& Context::tokens() {
    if (!tokens_) tokens_ = std::make_unique<core::tokens::TokenService>(keys());
    return *tokens_;
}

const core::rotation::PolicySet& Context::policies() {
    if (!policies_) {
        auto doc = store().policy_document();
        policies_ = doc ? core::rotation::PolicySet::parse(doc->second, doc->first) : core::rotation::PolicySet{};
    }
    return *policies_;
}

core::rotation::Engine& Context::engine() {
    if (!engine_) {
        char host[256] = {};
        gethostname(host, sizeof host - 1);
        core::rotation::EngineOptions o;
        o.owner = std::string(host) + ":" + std::to_string(getpid());
        engine_ = std::make_unique<core::rotation::Engine>(keys(), tokens(), policies(), o);
    }
    return *engine_;
}

}  // namespace kw::keytool
