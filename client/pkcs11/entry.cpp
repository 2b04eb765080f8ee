// C_GetFunctionList (the one exported symbol), C_Initialize, C_Finalize,
// C_GetInfo, and the function table.
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "client/pkcs11/api.hpp"
#include "client/pkcs11/module.hpp"

namespace kw::pkcs11 {
namespace {

std::mutex g_init_mutex;
std::atomic<Module*> g_module{nullptr};
pid_t g_pid = 0;

}  // namespace

Module* current() {
    return g_module.load(std::memory_order_acquire);
}

namespace api {

CK_RV Initialize(CK_VOID_PTR args) {
    if (args != nullptr) {
        const auto* a = static_cast<const CK_C_INITIALIZE_ARGS*>(args);
        if (a->pReserved != nullptr) return CKR_ARGUMENTS_BAD;
        const int given = (a->CreateMutex != nullptr) + (a->DestroyMutex != nullptr) + (a->LockMutex != nullptr) +
                          (a->UnlockMutex != nullptr);
        if (given != 0 && given != 4) return CKR_ARGUMENTS_BAD;
        // We lock with the OS's primitives; an application that insists on
        // its own (mutex functions without CKF_OS_LOCKING_OK) cannot be served.
        if (given == 4 && (a->flags & CKF_OS_LOCKING_OK) == 0) return CKR_CANT_LOCK;
    }
    std::lock_guard lock(g_init_mutex);
    if (Module* m = current(); m != nullptr) {
        if (g_pid == ::getpid()) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
        // A forked child initialising afresh: the parent's state is not ours
        // and its mutexes may be held by threads that do not exist here, so
        // it is left behind rather than destroyed.
        g_module.store(nullptr);
    }
    try {
        g_module.store(new Module(load_module_config()), std::memory_order_release);
        g_pid = ::getpid();
        return CKR_OK;
    } catch (const std::exception& e) {
        // The one message the module prints: without it a bad config file is
        // an anonymous CKR_GENERAL_ERROR in someone else's program.
        std::fprintf(stderr, "libkeywarden-pkcs11: %s\n", e.what());
        return CKR_GENERAL_ERROR;
    }
}

CK_RV Finalize(CK_VOID_PTR reserved) {
    if (reserved != nullptr) return CKR_ARGUMENTS_BAD;
    std::lock_guard lock(g_init_mutex);
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    g_module.store(nullptr);
    if (g_pid == ::getpid()) delete m;
    return CKR_OK;
}

CK_RV GetInfo(CK_INFO_PTR info) {
    if (current() == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == nullptr) return CKR_ARGUMENTS_BAD;
    *info = CK_INFO{};
    info->cryptokiVersion = {2, 40};
    pad(info->manufacturerID, sizeof info->manufacturerID, "keywarden");
    pad(info->libraryDescription, sizeof info->libraryDescription, "keywarden PKCS#11 module");
    info->libraryVersion = {0, 1};
    return CKR_OK;
}

}  // namespace api

namespace {

// Every function the module does not offer answers CKR_FUNCTION_NOT_SUPPORTED
// (or CKR_CRYPTOKI_NOT_INITIALIZED first), whatever its parameters.
template <typename F>
struct Unsupported;
template <typename... A>
struct Unsupported<CK_RV (*)(A...)> {
    static CK_RV call(A...) { return current() == nullptr ? CKR_CRYPTOKI_NOT_INITIALIZED : CKR_FUNCTION_NOT_SUPPORTED; }
};
template <typename F>
struct NotParallel;
template <typename... A>
struct NotParallel<CK_RV (*)(A...)> {
    static CK_RV call(A...) { return current() == nullptr ? CKR_CRYPTOKI_NOT_INITIALIZED : CKR_FUNCTION_NOT_PARALLEL; }
};

// A designated initializer cannot be parenthesised.
#define KW_UNSUPPORTED(name) \
    .name = &Unsupported<decltype(CK_FUNCTION_LIST::name)>::call  // NOLINT(bugprone-macro-parentheses)

CK_RV get_function_list(CK_FUNCTION_LIST_PTR_PTR out);

CK_FUNCTION_LIST g_functions = {
    .version = {2, 40},
    .C_Initialize = api::Initialize,
    .C_Finalize = api::Finalize,
    .C_GetInfo = api::GetInfo,
    .C_GetFunctionList = get_function_list,
    .C_GetSlotList = api::GetSlotList,
    .C_GetSlotInfo = api::GetSlotInfo,
    .C_GetTokenInfo = api::GetTokenInfo,
    .C_GetMechanismList = api::GetMechanismList,
    .C_GetMechanismInfo = api::GetMechanismInfo,
    KW_UNSUPPORTED(C_InitToken),
    KW_UNSUPPORTED(C_InitPIN),
    KW_UNSUPPORTED(C_SetPIN),
    .C_OpenSession = api::OpenSession,
    .C_CloseSession = api::CloseSession,
    .C_CloseAllSessions = api::CloseAllSessions,
    .C_GetSessionInfo = api::GetSessionInfo,
    KW_UNSUPPORTED(C_GetOperationState),
    KW_UNSUPPORTED(C_SetOperationState),
    .C_Login = api::Login,
    .C_Logout = api::Logout,
    KW_UNSUPPORTED(C_CreateObject),
    KW_UNSUPPORTED(C_CopyObject),
    KW_UNSUPPORTED(C_DestroyObject),
    .C_GetObjectSize = api::GetObjectSize,
    .C_GetAttributeValue = api::GetAttributeValue,
    KW_UNSUPPORTED(C_SetAttributeValue),
    .C_FindObjectsInit = api::FindObjectsInit,
    .C_FindObjects = api::FindObjects,
    .C_FindObjectsFinal = api::FindObjectsFinal,
    KW_UNSUPPORTED(C_EncryptInit),
    KW_UNSUPPORTED(C_Encrypt),
    KW_UNSUPPORTED(C_EncryptUpdate),
    KW_UNSUPPORTED(C_EncryptFinal),
    KW_UNSUPPORTED(C_DecryptInit),
    KW_UNSUPPORTED(C_Decrypt),
    KW_UNSUPPORTED(C_DecryptUpdate),
    KW_UNSUPPORTED(C_DecryptFinal),
    KW_UNSUPPORTED(C_DigestInit),
    KW_UNSUPPORTED(C_Digest),
    KW_UNSUPPORTED(C_DigestUpdate),
    KW_UNSUPPORTED(C_DigestKey),
    KW_UNSUPPORTED(C_DigestFinal),
    .C_SignInit = api::SignInit,
    .C_Sign = api::Sign,
    .C_SignUpdate = api::SignUpdate,
    .C_SignFinal = api::SignFinal,
    KW_UNSUPPORTED(C_SignRecoverInit),
    KW_UNSUPPORTED(C_SignRecover),
    .C_VerifyInit = api::VerifyInit,
    .C_Verify = api::Verify,
    .C_VerifyUpdate = api::VerifyUpdate,
    .C_VerifyFinal = api::VerifyFinal,
    KW_UNSUPPORTED(C_VerifyRecoverInit),
    KW_UNSUPPORTED(C_VerifyRecover),
    KW_UNSUPPORTED(C_DigestEncryptUpdate),
    KW_UNSUPPORTED(C_DecryptDigestUpdate),
    KW_UNSUPPORTED(C_SignEncryptUpdate),
    KW_UNSUPPORTED(C_DecryptVerifyUpdate),
    KW_UNSUPPORTED(C_GenerateKey),
    KW_UNSUPPORTED(C_GenerateKeyPair),
    KW_UNSUPPORTED(C_WrapKey),
    KW_UNSUPPORTED(C_UnwrapKey),
    KW_UNSUPPORTED(C_DeriveKey),
    .C_SeedRandom = api::SeedRandom,
    .C_GenerateRandom = api::GenerateRandom,
    .C_GetFunctionStatus = &NotParallel<CK_C_GetFunctionStatus>::call,
    .C_CancelFunction = &NotParallel<CK_C_CancelFunction>::call,
    KW_UNSUPPORTED(C_WaitForSlotEvent),
};

#undef KW_UNSUPPORTED

CK_RV get_function_list(CK_FUNCTION_LIST_PTR_PTR out) {
    if (out == nullptr) return CKR_ARGUMENTS_BAD;
    *out = &g_functions;
    return CKR_OK;
}

}  // namespace
}  // namespace kw::pkcs11

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
    return kw::pkcs11::get_function_list(out);
}
