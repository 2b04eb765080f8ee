#pragma once
// Reading a public key's defining attributes out of the token, so the layer
// above can turn them into SubjectPublicKeyInfo/PEM without the private key.
#include <cstdint>
#include <vector>

#include "token/session.hpp"

namespace kw::token {

struct PublicKeyAttributes {
    CK_KEY_TYPE key_type = CKK_RSA;
    std::vector<std::uint8_t> modulus;          // RSA
    std::vector<std::uint8_t> public_exponent;  // RSA
    std::vector<std::uint8_t> ec_params;        // EC / EdDSA: DER OID
    std::vector<std::uint8_t> ec_point;         // EC / EdDSA: DER OCTET STRING
};

[[nodiscard]] PublicKeyAttributes read_public_key(const Session& s, CK_OBJECT_HANDLE public_key);

}  // namespace kw::token
