#include "token/locking.hpp"

#include <atomic>
#include <new>

#include "token/spin_park_mutex.hpp"

namespace kw::token {
namespace {

std::atomic<std::uint64_t> g_created{0};

// The PKCS#11 mutex callbacks. The module owns the lifetime through
// CreateMutex/DestroyMutex; a null or foreign pointer is the module's bug, but
// answering CKR_MUTEX_BAD beats crashing on it.
CK_RV create_mutex(CK_VOID_PTR_PTR out) {
    if (out == nullptr) return CKR_ARGUMENTS_BAD;
    auto* m = new (std::nothrow) SpinParkMutex;
    if (m == nullptr) return CKR_HOST_MEMORY;
    *out = m;
    g_created.fetch_add(1, std::memory_order_relaxed);
    return CKR_OK;
}

CK_RV destroy_mutex(CK_VOID_PTR m) {
    if (m == nullptr) return CKR_MUTEX_BAD;
    delete static_cast<SpinParkMutex*>(m);
    return CKR_OK;
}

CK_RV lock_mutex(CK_VOID_PTR m) {
    if (m == nullptr) return CKR_MUTEX_BAD;
    static_cast<SpinParkMutex*>(m)->lock();
    return CKR_OK;
}

CK_RV unlock_mutex(CK_VOID_PTR m) {
    if (m == nullptr) return CKR_MUTEX_BAD;
    static_cast<SpinParkMutex*>(m)->unlock();
    return CKR_OK;
}

}  // namespace

std::uint64_t module_mutexes_created() noexcept {
    return g_created.load(std::memory_order_relaxed);
}

std::string_view to_string(ModuleLocking locking) noexcept {
    return locking == ModuleLocking::os ? "os" : "keywarden";
}

std::optional<ModuleLocking> parse_module_locking(std::string_view text) noexcept {
    if (text == "keywarden") return ModuleLocking::keywarden;
    if (text == "os") return ModuleLocking::os;
    return std::nullopt;
}

CK_C_INITIALIZE_ARGS initialize_args(ModuleLocking locking) noexcept {
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    if (locking == ModuleLocking::keywarden) {
        args.CreateMutex = create_mutex;
        args.DestroyMutex = destroy_mutex;
        args.LockMutex = lock_mutex;
        args.UnlockMutex = unlock_mutex;
    }
    return args;
}

}  // namespace kw::token
