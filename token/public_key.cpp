#include "token/public_key.hpp"

#include "token/object.hpp"

namespace kw::token {

PublicKeyAttributes read_public_key(const Session& s, CK_OBJECT_HANDLE public_key) {
    PublicKeyAttributes out;
    out.key_type = get_ulong(s, public_key, CKA_KEY_TYPE);
    if (out.key_type == CKK_RSA) {
        out.modulus = get_attribute(s, public_key, CKA_MODULUS);
        out.public_exponent = get_attribute(s, public_key, CKA_PUBLIC_EXPONENT);
    } else {
        out.ec_params = get_attribute(s, public_key, CKA_EC_PARAMS);
        out.ec_point = get_attribute(s, public_key, CKA_EC_POINT);
    }
    return out;
}

}  // namespace kw::token
