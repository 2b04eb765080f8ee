#pragma once
// How a PKCS#11 module guards its own state when we call it from several
// threads: the mutexes handed to C_Initialize.
#include <cstdint>
#include <optional>
#include <string_view>

#include "token/pkcs11.hpp"

namespace kw::token {

enum class ModuleLocking {
    /// CKF_OS_LOCKING_OK only: the module uses its own OS mutexes.
    os,
    /// CKF_OS_LOCKING_OK plus CreateMutex/LockMutex/... callbacks backed by
    /// SpinParkMutex. PKCS#11 lets the module pick either; SoftHSM uses the
    /// callbacks. With two threads this doubles SoftHSM's HMAC rate: its
    /// pthread mutexes park a thread at every collision, and it takes about
    /// forty of them per operation.
    keywarden,
};

[[nodiscard]] std::string_view to_string(ModuleLocking locking) noexcept;
/// "keywarden" or "os"; nullopt for anything else.
[[nodiscard]] std::optional<ModuleLocking> parse_module_locking(std::string_view text) noexcept;

/// The C_Initialize arguments for `locking`. The callbacks it names are plain
/// functions with no state, valid for the life of the process.
[[nodiscard]] CK_C_INITIALIZE_ARGS initialize_args(ModuleLocking locking) noexcept;

/// How many mutexes modules have created through our callbacks in this
/// process: shows whether a module honours them (SoftHSM does).
[[nodiscard]] std::uint64_t module_mutexes_created() noexcept;

}  // namespace kw::token
