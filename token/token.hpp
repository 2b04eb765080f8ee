#pragma once
// The token as the layers above see it: a loaded module, one chosen token,
// one login, and a pool of sessions.
//
// Login happens once per process (PKCS#11 login state is per application, not
// per session). The PIN is kept, wiped on destruction, only so that a forked
// child can log in again; it is never logged or copied out.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "token/module.hpp"
#include "token/pin.hpp"
#include "token/secret.hpp"
#include "token/session_pool.hpp"
#include "token/slot.hpp"

namespace kw::token {

struct TokenConfig {
    std::string module_path;  // "" = SoftHSM default
    TokenSelector selector;
    std::size_t sessions = 2;
    ModuleLocking locking = ModuleLocking::keywarden;
};

class Token {
public:
    /// Loads the module and finds the token; does not log in.
    explicit Token(const TokenConfig& config);
    ~Token();
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;

    /// C_Login(CKU_USER). Throws Pkcs11Error("C_Login", CKR_PIN_INCORRECT) etc.
    void login(SecretString pin);
    [[nodiscard]] bool logged_in() const noexcept { return logged_in_; }
    /// Asks the token now (C_GetSessionInfo on a pooled session) whether
    /// this process's sessions are logged in, unlike logged_in(), which only
    /// remembers login(). Throws Pkcs11Error when the token does not answer
    /// (CKR_DEVICE_REMOVED, CKR_SESSION_HANDLE_INVALID, ...).
    [[nodiscard]] bool session_logged_in();
    /// The mutexes the module was initialised with.
    [[nodiscard]] ModuleLocking locking() const noexcept { return module_->locking(); }

    /// A session from the pool. After fork, the first call in the child
    /// re-initialises the module, reopens sessions and logs in again.
    [[nodiscard]] SessionPool::Lease session();

    /// Bumped whenever session objects may have vanished (after fork): caches
    /// of object handles compare it and drop stale entries.
    [[nodiscard]] std::uint64_t generation() const noexcept { return generation_.load(); }

    /// How many sessions have been leased: every token operation takes one,
    /// so tests use it to prove a code path made no HSM call.
    [[nodiscard]] std::uint64_t session_leases() const noexcept { return leases_.load(); }

    [[nodiscard]] const TokenInfo& info() const noexcept { return info_; }
    [[nodiscard]] const Module& module() const noexcept { return *module_; }

private:
    void recover_after_fork();

    std::unique_ptr<Module> module_;
    TokenInfo info_;
    std::unique_ptr<SessionPool> pool_;
    SecretString pin_;
    bool logged_in_ = false;
    std::atomic<std::uint64_t> generation_{1};
    std::atomic<std::uint64_t> leases_{0};
    std::mutex fork_mutex_;
};

}  // namespace kw::token
