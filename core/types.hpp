#pragma once
// Named enums of the key model and their text forms. Text forms are what the
// CLI accepts, the store writes and JSON shows; parse_* return nullopt on
// anything else so callers can say what was wrong.
#include <optional>
#include <string_view>

namespace kw::core {

enum class KeyType { hmac, rsa, ecdsa, ed25519, jwt, api_token, provisioning };
enum class Residency { token, wrapped };
// NIST SP 800-57 key states.
enum class VersionState { pre_active, active, suspended, deactivated, compromised, destroyed };
enum class JwtAlg { HS256, RS256, PS256, ES256, EdDSA };
enum class Curve { p256, p384 };
// How a signature is laid out on the way out (ECDSA only: raw r||s for JOSE,
// DER for X.509 and `openssl dgst -verify`).
enum class SignatureFormat { der, raw };
enum class RsaPadding { pkcs1, pss };

[[nodiscard]] std::string_view to_string(KeyType v);
[[nodiscard]] std::string_view to_string(Residency v);
[[nodiscard]] std::string_view to_string(VersionState v);
[[nodiscard]] std::string_view to_string(JwtAlg v);
[[nodiscard]] std::string_view to_string(Curve v);

[[nodiscard]] std::optional<KeyType> parse_key_type(std::string_view s);
[[nodiscard]] std::optional<Residency> parse_residency(std::string_view s);
[[nodiscard]] std::optional<VersionState> parse_version_state(std::string_view s);
[[nodiscard]] std::optional<JwtAlg> parse_jwt_alg(std::string_view s);
[[nodiscard]] std::optional<Curve> parse_curve(std::string_view s);

/// States in which a version may produce new signatures.
[[nodiscard]] constexpr bool can_sign(VersionState s) {
    return s == VersionState::active;
}
/// States in which a version may check signatures. pre_active counts: a
/// version is published (verify set, JWKS) before it signs, so that
/// verifiers know it by the time its first signature arrives.
[[nodiscard]] constexpr bool can_verify(VersionState s) {
    return s == VersionState::pre_active || s == VersionState::active || s == VersionState::suspended ||
           s == VersionState::deactivated;
}

}  // namespace kw::core
