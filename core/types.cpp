#include "core/types.hpp"

#include <array>
#include <utility>

namespace kw::core {
namespace {

template <typename E, std::size_t N>
std::optional<E> lookup(const std::array<std::pair<E, std::string_view>, N>& table, std::string_view s) {
    for (const auto& [value, name] : table) {
        if (name == s) return value;
    }
    return std::nullopt;
}

template <typename E, std::size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& table, E v) {
    for (const auto& [value, name] : table) {
        if (value == v) return name;
    }
    return "unknown";
}

constexpr std::array<std::pair<KeyType, std::string_view>, 7> kKeyTypes{{
    {KeyType::hmac, "hmac"},
    {KeyType::rsa, "rsa"},
    {KeyType::ecdsa, "ecdsa"},
    {KeyType::ed25519, "ed25519"},
    {KeyType::jwt, "jwt"},
    {KeyType::api_token, "api_token"},
    {KeyType::provisioning, "provisioning"},
}};
constexpr std::array<std::pair<Residency, std::string_view>, 2> kResidencies{{
    {Residency::token, "token"},
    {Residency::wrapped, "wrapped"},
}};
constexpr std::array<std::pair<VersionState, std::string_view>, 6> kStates{{
    {VersionState::pre_active, "pre_active"},
    {VersionState::active, "active"},
    {VersionState::suspended, "suspended"},
    {VersionState::deactivated, "deactivated"},
    {VersionState::compromised, "compromised"},
    {VersionState::destroyed, "destroyed"},
}};
constexpr std::array<std::pair<JwtAlg, std::string_view>, 5> kJwtAlgs{{
    {JwtAlg::HS256, "HS256"},
    {JwtAlg::RS256, "RS256"},
    {JwtAlg::PS256, "PS256"},
    {JwtAlg::ES256, "ES256"},
    {JwtAlg::EdDSA, "EdDSA"},
}};
constexpr std::array<std::pair<Curve, std::string_view>, 2> kCurves{{
    {Curve::p256, "P-256"},
    {Curve::p384, "P-384"},
}};

}  // namespace

std::string_view to_string(KeyType v) {
    return name_of(kKeyTypes, v);
}
std::string_view to_string(Residency v) {
    return name_of(kResidencies, v);
}
std::string_view to_string(VersionState v) {
    return name_of(kStates, v);
}
std::string_view to_string(JwtAlg v) {
    return name_of(kJwtAlgs, v);
}
std::string_view to_string(Curve v) {
    return name_of(kCurves, v);
}

std::optional<KeyType> parse_key_type(std::string_view s) {
    return lookup(kKeyTypes, s);
}
std::optional<Residency> parse_residency(std::string_view s) {
    return lookup(kResidencies, s);
}
std::optional<VersionState> parse_version_state(std::string_view s) {
    return lookup(kStates, s);
}
std::optional<JwtAlg> parse_jwt_alg(std::string_view s) {
    return lookup(kJwtAlgs, s);
}
std::optional<Curve> parse_curve(std::string_view s) {
    if (s == "p256" || s == "prime256v1" || s == "secp256r1") return Curve::p256;
    if (s == "p384" || s == "secp384r1") return Curve::p384;
    return lookup(kCurves, s);
}

}  // namespace kw::core
