#include "token/wrap.hpp"

#include "token/attributes.hpp"
#include "token/error.hpp"

namespace kw::token {

std::vector<std::uint8_t> wrap_key(const Session& s, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key) {
    CK_MECHANISM mech{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
    CK_ULONG len = 0;
    check("C_WrapKey", s.fn()->C_WrapKey(s.handle(), &mech, wrapping_key, key, nullptr, &len));
    std::vector<std::uint8_t> blob(len);
    check("C_WrapKey", s.fn()->C_WrapKey(s.handle(), &mech, wrapping_key, key, blob.data(), &len));
    blob.resize(len);
    return blob;
}

ObjectHandle unwrap_key(const Session& s, CK_OBJECT_HANDLE wrapping_key, std::span<const std::uint8_t> blob,
                        const UnwrapSpec& spec) {
    CK_MECHANISM mech{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
    Template t;
    t.add_ulong(CKA_CLASS, spec.key_class)
        .add_ulong(CKA_KEY_TYPE, spec.key_type)
        .add_bool(CKA_TOKEN, false)
        .add_bool(CKA_PRIVATE, true)
        .add_bool(CKA_SENSITIVE, true)
        .add_bool(CKA_EXTRACTABLE, false)
        .add_bool(CKA_SIGN, true)
        .add_string(CKA_LABEL, spec.label);
    if (spec.key_class == CKO_SECRET_KEY) t.add_bool(CKA_VERIFY, true);
    if (!spec.id.empty()) t.add_bytes(CKA_ID, spec.id);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    check("C_UnwrapKey", s.fn()->C_UnwrapKey(s.handle(), &mech, wrapping_key, const_cast<CK_BYTE_PTR>(blob.data()),
                                             blob.size(), t.data(), t.size(), &h));
    return ObjectHandle(s, h);
}

}  // namespace kw::token
