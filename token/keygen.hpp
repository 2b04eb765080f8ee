#pragma once
// Key generation inside the token. Private and secret keys are always
// CKA_SENSITIVE and CKA_PRIVATE. CKA_EXTRACTABLE is true only when the caller
// asks for a key that will be wrapped under the root key (wrapped residency);
// such a key can leave the token only encrypted (sensitive keys cannot be read
// in the clear, only wrapped).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "token/object.hpp"
#include "token/session.hpp"

namespace kw::token {

enum class KeyAlgorithm {
    generic_secret_256,  // HMAC keys (CKK_GENERIC_SECRET, 256 bits)
    aes_256,             // wrapping keys
    rsa,                 // 2048, 3072 or 4096 bits
    ec_p256,
    ec_p384,
    ed25519,
};

[[nodiscard]] std::string_view to_string(KeyAlgorithm alg);
[[nodiscard]] bool is_asymmetric(KeyAlgorithm alg);

enum class KeyUsage {
    sign,  // CKA_SIGN/CKA_VERIFY
    wrap,  // CKA_WRAP/CKA_UNWRAP (root wrapping key)
};

struct KeySpec {
    KeyAlgorithm algorithm = KeyAlgorithm::generic_secret_256;
    unsigned rsa_bits = 2048;
    unsigned secret_bytes = 32;  // generic secrets: HMAC-SHA384/512 need 48/64 in SoftHSM
};

struct KeyOptions {
    std::string label;
    std::vector<std::uint8_t> id;  // CKA_ID (the version kid)
    bool token_object = false;     // persistent (token residency) vs session object
    bool extractable = false;      // only for wrapped residency
    KeyUsage usage = KeyUsage::sign;
};

/// A generated key. For secret keys `public_key` is empty. Session objects
/// are owned (destroyed unless released); token objects are not owned.
struct GeneratedKey {
    ObjectHandle private_key;  // or the secret key
    ObjectHandle public_key;
};

[[nodiscard]] GeneratedKey generate_key(const Session& session, const KeySpec& spec, const KeyOptions& options);

/// DER-encoded curve OIDs (CKA_EC_PARAMS).
[[nodiscard]] std::vector<std::uint8_t> ec_params_for(KeyAlgorithm alg);

}  // namespace kw::token
