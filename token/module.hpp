#pragma once
// A loaded PKCS#11 module: dlopen + C_GetFunctionList + C_Initialize with
// CKF_OS_LOCKING_OK and, by default, our own mutex callbacks (token/locking.hpp;
// we call the module from threads).
//
// Fork: PKCS#11 state is not inherited across fork(). The Module remembers the
// pid that initialised it; after fork, the child must call reinitialize()
// (Token does this on its own when it notices the pid changed). With
// SoftHSM's `library.reset_on_fork = true` the child's C_Initialize starts a
// clean library state; without it the child sees CKR_CRYPTOKI_ALREADY_INITIALIZED,
// which we accept, but its old sessions are unusable either way, so every
// session, login and cached handle is rebuilt.
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "token/locking.hpp"
#include "token/pkcs11.hpp"

namespace kw::token {

class Module {
public:
    /// Loads and initialises the module at `path`. Throws TokenError(module_load)
    /// or Pkcs11Error("C_Initialize", ...).
    explicit Module(const std::string& path, ModuleLocking locking = ModuleLocking::keywarden);
    ~Module();
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    [[nodiscard]] CK_FUNCTION_LIST* fn() const noexcept { return fn_; }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] ModuleLocking locking() const noexcept { return locking_; }

    /// True when called in a process other than the one that initialised.
    [[nodiscard]] bool forked() const noexcept;
    /// Calls C_Initialize again in a forked child.
    void reinitialize();

private:
    void initialize();

    std::string path_;
    ModuleLocking locking_;
    void* dl_ = nullptr;
    CK_FUNCTION_LIST* fn_ = nullptr;
    std::uint64_t forks_ = 0;  // the process's fork count when initialised
    // Only the Module whose C_Initialize succeeded calls C_Finalize: a second
    // Module on the same library (CKR_CRYPTOKI_ALREADY_INITIALIZED) must not
    // tear down the first one's state.
    bool owns_init_ = false;
};

/// Default SoftHSM module path on Debian, or "" when not installed.
[[nodiscard]] std::string default_module_path();

}  // namespace kw::token
