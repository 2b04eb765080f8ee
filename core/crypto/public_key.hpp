#pragma once
// Public keys outside the token: SubjectPublicKeyInfo built from the token's
// attributes, PEM for `openssl`, and signature checks with the public key.
//
// Verifying with a public key needs no secret, so asymmetric verification runs
// in OpenSSL (faster, and it spares the token). HMAC verification always runs
// in the token.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/types.hpp"
#include "token/public_key.hpp"
#include "token/sign.hpp"

namespace kw::core {

[[nodiscard]] std::vector<std::uint8_t> spki_from_attributes(const token::PublicKeyAttributes& attrs);
[[nodiscard]] std::string spki_to_pem(std::span<const std::uint8_t> spki);
/// PEM "PUBLIC KEY" text -> SubjectPublicKeyInfo DER; throws Error(invalid_argument).
[[nodiscard]] std::vector<std::uint8_t> pem_to_spki(std::string_view pem);

/// Checks `signature` over `data` with the public key. ECDSA signatures may be
/// raw r||s or DER. Returns false for a bad signature; throws for a bad key.
[[nodiscard]] bool verify_with_public_key(std::span<const std::uint8_t> spki, token::SignMechanism mechanism,
                                          std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature);

/// ECDSA r||s (each `field` bytes) <-> DER SEQUENCE{r,s}.
[[nodiscard]] std::vector<std::uint8_t> ecdsa_raw_to_der(std::span<const std::uint8_t> raw);
[[nodiscard]] std::vector<std::uint8_t> ecdsa_der_to_raw(std::span<const std::uint8_t> der, std::size_t field);

}  // namespace kw::core
