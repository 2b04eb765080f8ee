#pragma once
// What a keytool command needs, opened on demand: configuration, then the
// token (logged in), the store, root keys and the key service. Owned here and
// torn down in reverse order, so sessions close before the module finalises.
#include <memory>
#include <optional>
#include <string>

#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/key_service.hpp"
#include "core/root_keys.hpp"
#include "core/rotation/engine.hpp"
#include "core/rotation/policy.hpp"
#include "core/store/store.hpp"
#include "core/tokens/token_service.hpp"
#include "token/token.hpp"

namespace kw::keytool {

class Context {
public:
    explicit Context(std::optional<std::string> config_path);
    ~Context();

    [[nodiscard]] const core::Config& config() const { return config_; }
    [[nodiscard]] const std::optional<std::string>& config_path() const { return config_path_; }
    /// Loads the module and finds the token (no login).
    token::Token& token();
    /// token() plus C_Login with the configured PIN source.
    token::Token& logged_in_token();
    core::Store& store();
    const core::RootKeys& roots();
    core::KeyService& keys();
    /// The audit log (opens token, store and the audit keys).
    core::audit::Log& audit();
    core::audit::SqliteSink& audit_sink();
    core::tokens::TokenService& tokens();
    /// The applied policy set (from the store; empty if none applied).
    const core::rotation::PolicySet& policies();
    core::rotation::Engine& engine();
    /// "cli:<user>", the actor named in audit events.
    [[nodiscard]] static std::string actor();
    const core::Clock& clock() const { return clock_; }

private:
    [[nodiscard]] std::string login_failure_file() const;
    void note_login_failure(const std::string& rv);
    void replay_login_failures();

    std::optional<std::string> config_path_;
    core::Config config_;
    core::SystemClock clock_;
    std::unique_ptr<token::Token> token_;
    std::unique_ptr<core::Store> store_;
    std::optional<core::RootKeys> roots_;
    std::unique_ptr<core::audit::SqliteSink> audit_sink_;
    std::unique_ptr<core::audit::Keys> audit_keys_;
    std::unique_ptr<core::audit::Log> audit_log_;
    std::unique_ptr<core::KeyService> keys_;
    std::unique_ptr<core::tokens::TokenService> tokens_;
    std::optional<core::rotation::PolicySet> policies_;
    std::unique_ptr<core::rotation::Engine> engine_;
};

}  // namespace kw::keytool
