#include "token/module.hpp"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "token/error.hpp"

namespace kw::token {
namespace {

// How many forks this process descends from. forked() runs on every session
// lease, and getpid() is a system call: a counter bumped in the child by a
// pthread_atfork handler answers the same question from memory. Process-wide
// by nature (atfork handlers take no context); registered once.
std::atomic<std::uint64_t> g_forks{0};

std::uint64_t fork_generation() {
    static const bool registered = [] {
        pthread_atfork(nullptr, nullptr, [] { g_forks.fetch_add(1, std::memory_order_relaxed); });
        return true;
    }();
    (void)registered;
    return g_forks.load(std::memory_order_relaxed);
}

}  // namespace

Module::Module(const std::string& path, ModuleLocking locking) : path_(path), locking_(locking) {
    // RTLD_LOCAL keeps the module's symbols (and the OpenSSL it links) from
    // interposing ours.
    dl_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (dl_ == nullptr) {
        const char* why = dlerror();
        throw TokenError(TokenErrorKind::module_load,
                         "cannot load PKCS#11 module " + path + ": " + (why ? why : "unknown error"));
    }
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl_, "C_GetFunctionList"));
    if (get_list == nullptr) {
        dlclose(dl_);
        throw TokenError(TokenErrorKind::module_load, path + " has no C_GetFunctionList: not a PKCS#11 module");
    }
    CK_RV rv = get_list(&fn_);
    if (rv != CKR_OK) {
        dlclose(dl_);
        throw Pkcs11Error("C_GetFunctionList", rv);
    }
    try {
        initialize();
    } catch (...) {
        dlclose(dl_);
        throw;
    }
}

void Module::initialize() {
    CK_C_INITIALIZE_ARGS args = initialize_args(locking_);
    CK_RV rv = fn_->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) throw Pkcs11Error("C_Initialize", rv);
    owns_init_ = owns_init_ || rv == CKR_OK;
    forks_ = fork_generation();
}

Module::~Module() {
    // Only the initialising process finalises: a forked child that never
    // re-initialised must not tear down state it does not own.
    if (fn_ != nullptr && owns_init_ && !forked()) fn_->C_Finalize(nullptr);
    if (dl_ != nullptr) dlclose(dl_);
}

bool Module::forked() const noexcept {
    return forks_ != fork_generation();
}

void Module::reinitialize() {
    initialize();
}

std::string default_module_path() {
    for (const char* p :
         {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
          "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so"}) {
        if (std::filesystem::exists(p)) return p;
    }
    return {};
}

}  // namespace kw::token
