// Sessions and login. The "PIN" is a keywarden API token with scope
// `pkcs11` or `sign:<key glob>`; the HSM PIN never reaches the application.
#include "client/pkcs11/api.hpp"
#include "client/pkcs11/module.hpp"

namespace kw::pkcs11::api {

CK_RV OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR out) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == nullptr) return CKR_ARGUMENTS_BAD;
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    if ((flags & CKF_SERIAL_SESSION) == 0) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    *out = m->open_session(flags);
    return CKR_OK;
}

CK_RV CloseSession(CK_SESSION_HANDLE session) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    return m->close_session(session) ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
}

CK_RV CloseAllSessions(CK_SLOT_ID slot) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    m->close_all_sessions();
    return CKR_OK;
}

CK_RV GetSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    auto s = m->session(session);
    if (s == nullptr) return CKR_SESSION_HANDLE_INVALID;
    if (info == nullptr) return CKR_ARGUMENTS_BAD;
    *info = CK_SESSION_INFO{};
    info->slotID = kSlotId;
    info->flags = s->flags;
    const bool rw = (s->flags & CKF_RW_SESSION) != 0;
    if (m->logged_in()) {
        info->state = rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
    } else {
        info->state = rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
    }
    return CKR_OK;
}

CK_RV Login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (m->session(session) == nullptr) return CKR_SESSION_HANDLE_INVALID;
    if (user == CKU_SO) return CKR_USER_TYPE_INVALID;                        // nothing to administer through this face
    if (user == CKU_CONTEXT_SPECIFIC) return CKR_OPERATION_NOT_INITIALIZED;  // no key needs re-authentication
    if (user != CKU_USER) return CKR_USER_TYPE_INVALID;
    if (pin == nullptr) return CKR_ARGUMENTS_BAD;
    if (m->logged_in()) return CKR_USER_ALREADY_LOGGED_IN;
    try {
        (void)m->client().login({reinterpret_cast<const char*>(pin), pin_len});
    } catch (const client::RefusedError& e) {
        switch (e.status()) {
            case wire::Status::auth_failed:
            case wire::Status::forbidden: return CKR_PIN_INCORRECT;
            case wire::Status::auth_expired: return CKR_PIN_EXPIRED;
            case wire::Status::rate_limited: return CKR_FUNCTION_REJECTED;
            default: return rv_of(e);
        }
    } catch (const std::exception& e) {
        return rv_of(e);
    }
    m->set_logged_in(true);
    try {
        m->refresh_objects();
    } catch (const std::exception& e) {
        m->set_logged_in(false);
        m->client().logout();
        return rv_of(e);
    }
    return CKR_OK;
}

CK_RV Logout(CK_SESSION_HANDLE session) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (m->session(session) == nullptr) return CKR_SESSION_HANDLE_INVALID;
    if (!m->logged_in()) return CKR_USER_NOT_LOGGED_IN;
    m->set_logged_in(false);
    m->client().logout();
    return CKR_OK;
}

}  // namespace kw::pkcs11::api
