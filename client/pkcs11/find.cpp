// Object search and attributes.
#include "client/pkcs11/api.hpp"
#include "client/pkcs11/module.hpp"

namespace kw::pkcs11::api {

CK_RV FindObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    auto s = m->session(session);
    if (s == nullptr) return CKR_SESSION_HANDLE_INVALID;
    if (templ == nullptr && count != 0) return CKR_ARGUMENTS_BAD;
    // An entry that claims a value but has no buffer would be compared
    // through a NULL pointer.
    for (CK_ULONG i = 0; i < count; ++i) {
        if (templ[i].pValue == nullptr && templ[i].ulValueLen != 0) return CKR_ARGUMENTS_BAD;
    }
    std::lock_guard lock(s->mutex);
    if (s->finding) return CKR_OPERATION_ACTIVE;
    s->found.clear();
    s->found_pos = 0;
    if (m->logged_in()) {
        // Every search sees the keys as they are now: rotations, new keys,
        // revocations (a key the credential may no longer use disappears).
        try {
            m->refresh_objects();
        } catch (const std::exception& e) {
            return rv_of(e);
        }
        s->found = m->search({templ, count});
    }
    s->finding = true;
    return CKR_OK;
}

CK_RV FindObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    auto s = m->session(session);
    if (s == nullptr) return CKR_SESSION_HANDLE_INVALID;
    if (out == nullptr || count == nullptr) return CKR_ARGUMENTS_BAD;
    std::lock_guard lock(s->mutex);
    if (!s->finding) return CKR_OPERATION_NOT_INITIALIZED;
    CK_ULONG n = 0;
    while (n < max && s->found_pos < s->found.size()) out[n++] = s->found[s->found_pos++];
    *count = n;
    return CKR_OK;
}

CK_RV FindObjectsFinal(CK_SESSION_HANDLE session) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    auto s = m->session(session);
    if (s == nullptr) return CKR_SESSION_HANDLE_INVALID;
    std::lock_guard lock(s->mutex);
    if (!s->finding) return CKR_OPERATION_NOT_INITIALIZED;
    s->finding = false;
    s->found.clear();
    return CKR_OK;
}

CK_RV GetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (m->session(session) == nullptr) return CKR_SESSION_HANDLE_INVALID;
    if (templ == nullptr && count != 0) return CKR_ARGUMENTS_BAD;
    auto o = m->object(object);
    if (!o) return CKR_OBJECT_HANDLE_INVALID;
    // Every entry is processed; the answer reports a problem with any of them.
    CK_RV result = CKR_OK;
    for (CK_ULONG i = 0; i < count; ++i) {
        const CK_RV rv = read_attribute(*o, templ[i]);
        if (rv != CKR_OK) result = rv;
    }
    return result;
}

CK_RV GetObjectSize(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG_PTR size) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (m->session(session) == nullptr) return CKR_SESSION_HANDLE_INVALID;
    if (size == nullptr) return CKR_ARGUMENTS_BAD;
    if (!m->object(object)) return CKR_OBJECT_HANDLE_INVALID;
    *size = CK_UNAVAILABLE_INFORMATION;
    return CKR_OK;
}

}  // namespace kw::pkcs11::api
