// The one slot and its token; mechanisms; random numbers.
#include <cstring>

#include "client/pkcs11/api.hpp"
#include "client/pkcs11/module.hpp"

namespace kw::pkcs11::api {
namespace {

// keywardend answers: the token is "present" while its daemon is reachable.
bool daemon_reachable(Module& m) {
    try {
        m.client().ping();
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace

CK_RV GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (count == nullptr) return CKR_ARGUMENTS_BAD;
    const CK_ULONG n = (token_present == CK_FALSE || daemon_reachable(*m)) ? 1 : 0;
    if (list == nullptr) {
        *count = n;
        return CKR_OK;
    }
    if (*count < n) {
        *count = n;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (n == 1) list[0] = kSlotId;
    *count = n;
    return CKR_OK;
}

CK_RV GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == nullptr) return CKR_ARGUMENTS_BAD;
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    *info = CK_SLOT_INFO{};
    pad(info->slotDescription, sizeof info->slotDescription, "keywardend " + m->config().socket);
    pad(info->manufacturerID, sizeof info->manufacturerID, "keywarden");
    info->flags = CKF_REMOVABLE_DEVICE | CKF_HW_SLOT | (daemon_reachable(*m) ? CKF_TOKEN_PRESENT : 0);
    info->hardwareVersion = {0, 1};
    info->firmwareVersion = {0, 1};
    return CKR_OK;
}

CK_RV GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == nullptr) return CKR_ARGUMENTS_BAD;
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    if (!daemon_reachable(*m)) return CKR_TOKEN_NOT_PRESENT;
    *info = CK_TOKEN_INFO{};
    pad(info->label, sizeof info->label, m->config().token_label);
    pad(info->manufacturerID, sizeof info->manufacturerID, "keywarden");
    pad(info->model, sizeof info->model, "keywardend");
    pad(info->serialNumber, sizeof info->serialNumber, "0001");
    // Write-protected: keys are made with hsm-keytool or the admin API, never here.
    info->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED | CKF_WRITE_PROTECTED;
    info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulSessionCount = m->session_count();
    info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulRwSessionCount = CK_UNAVAILABLE_INFORMATION;
    // The "PIN" is a keywarden API token: prefix, '_', 39 base62 characters.
    info->ulMaxPinLen = 128;
    info->ulMinPinLen = 8;
    info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->hardwareVersion = {0, 1};
    info->firmwareVersion = {0, 1};
    return CKR_OK;
}

CK_RV GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count) {
    if (current() == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (count == nullptr) return CKR_ARGUMENTS_BAD;
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    const auto all = mechanisms();
    if (list == nullptr) {
        *count = all.size();
        return CKR_OK;
    }
    if (*count < all.size()) {
        *count = all.size();
        return CKR_BUFFER_TOO_SMALL;
    }
    for (std::size_t i = 0; i < all.size(); ++i) list[i] = all[i].type;
    *count = all.size();
    return CKR_OK;
}

CK_RV GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info) {
    if (current() == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == nullptr) return CKR_ARGUMENTS_BAD;
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    const MechanismSpec* spec = find_mechanism(type);
    if (spec == nullptr) return CKR_MECHANISM_INVALID;
    *info = spec->info;
    return CKR_OK;
}

CK_RV GenerateRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG len) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (m->session(session) == nullptr) return CKR_SESSION_HANDLE_INVALID;
    if (out == nullptr && len != 0) return CKR_ARGUMENTS_BAD;
    if (!m->logged_in()) return CKR_USER_NOT_LOGGED_IN;  // the daemon serves authenticated connections only
    try {
        for (CK_ULONG done = 0; done < len;) {
            const std::size_t n = std::min<CK_ULONG>(len - done, 1024);
            auto bytes = m->client().random(n);
            std::memcpy(out + done, bytes.data(), bytes.size());
            done += bytes.size();
        }
        return CKR_OK;
    } catch (const std::exception& e) {
        return rv_of(e);
    }
}

CK_RV SeedRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR seed, CK_ULONG len) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (m->session(session) == nullptr) return CKR_SESSION_HANDLE_INVALID;
    if (seed == nullptr && len != 0) return CKR_ARGUMENTS_BAD;
    return CKR_RANDOM_SEED_NOT_SUPPORTED;  // the HSM's generator takes no outside seed
}

}  // namespace kw::pkcs11::api
