#pragma once
// Signatures and MACs computed by the token.
//
// ECDSA: Debian's SoftHSM has no CKM_ECDSA_SHA256, so the message is hashed
// in this process (SHA-2 of public data is not secret) and the digest signed
// with CKM_ECDSA. The token returns raw r||s; DER conversion is core's job.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "token/session.hpp"

namespace kw::token {

enum class SignMechanism {
    hmac_sha256,
    hmac_sha384,
    hmac_sha512,
    rsa_pkcs1_sha256,
    rsa_pkcs1_sha384,
    rsa_pkcs1_sha512,
    rsa_pss_sha256,
    rsa_pss_sha384,
    rsa_pss_sha512,
    ecdsa_sha256,
    ecdsa_sha384,
    eddsa,
    // Pre-hashed and raw forms, for callers that hash themselves (the
    // PKCS#11 face: CKM_ECDSA, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS). The data is
    // the digest (ECDSA, PSS: salt length = digest length, MGF1 with the same
    // hash) or the encoded DigestInfo (PKCS#1 v1.5, at most k-11 bytes).
    ecdsa_prehashed,
    rsa_pkcs1_raw,
    rsa_pss_prehashed_sha256,
    rsa_pss_prehashed_sha384,
    rsa_pss_prehashed_sha512,
};

/// The digest length a pre-hashed mechanism expects (0: any length / not pre-hashed).
[[nodiscard]] std::size_t prehashed_length(SignMechanism m);

[[nodiscard]] std::string_view to_string(SignMechanism m);

/// Signs `data` with the key. Throws Pkcs11Error (e.g. CKR_KEY_FUNCTION_NOT_PERMITTED).
[[nodiscard]] std::vector<std::uint8_t> sign(const Session& s, CK_OBJECT_HANDLE key, SignMechanism m,
                                             std::span<const std::uint8_t> data);

/// True for a good signature, false for CKR_SIGNATURE_INVALID or
/// CKR_SIGNATURE_LEN_RANGE; other failures throw.
[[nodiscard]] bool verify(const Session& s, CK_OBJECT_HANDLE key, SignMechanism m, std::span<const std::uint8_t> data,
                          std::span<const std::uint8_t> signature);

/// Random bytes from C_GenerateRandom.
void generate_random(const Session& s, std::span<std::uint8_t> out);

}  // namespace kw::token
