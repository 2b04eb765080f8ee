#pragma once
// The mechanisms the module offers, and how each becomes a wire request:
// hashing mechanisms hash here (multi-part input never crosses the socket),
// raw ones pass the caller's digest or DigestInfo through, HMAC and EdDSA
// send the whole message.
#include <openssl/evp.h>

#include <optional>
#include <span>
#include <vector>

#include "core/wire/protocol.hpp"
#include "token/pkcs11.hpp"

namespace kw::pkcs11 {

struct MechanismSpec {
    CK_MECHANISM_TYPE type;
    wire::Family family;
    CK_MECHANISM_INFO info;
    const EVP_MD* (*hash)();  // hashed here (null: not a hash-then-sign mechanism)
    bool single_part;         // CKM_ECDSA, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS
};

[[nodiscard]] std::span<const MechanismSpec> mechanisms();
[[nodiscard]] const MechanismSpec* find_mechanism(CK_MECHANISM_TYPE type);

/// A validated mechanism with its parameters.
struct Prepared {
    const MechanismSpec* spec = nullptr;
    wire::Mechanism wire = wire::Mechanism::hmac_sha256;
    const EVP_MD* pss_hash = nullptr;  // RSA-PSS: the hash named by the parameters
};

/// Checks the mechanism and its parameter block. Returns the CKR code of the
/// first problem (CKR_MECHANISM_INVALID, CKR_MECHANISM_PARAM_INVALID) or CKR_OK.
CK_RV prepare(const CK_MECHANISM& mechanism, Prepared& out);

/// The bytes sent for a complete input: the digest (already computed here
/// for hashing mechanisms), DigestInfo||digest for CKM_SHAx_RSA_PKCS, or the
/// message itself. CKR_DATA_LEN_RANGE for a raw input of the wrong size.
CK_RV wire_input(const Prepared& p, std::span<const std::uint8_t> input, bool already_hashed,
                 std::vector<std::uint8_t>& out);

}  // namespace kw::pkcs11
