#pragma once
// JWTs signed in the token with `jwt` keys, and the JWKS that verifies them.
//
// The header carries alg (the key's JWT alg) and kid (the signing version's
// kid), so verifiers pick the right key across rotations. ES256 signatures are
// raw r||s as JOSE requires. Only asymmetric keys appear in the JWKS; an HS256
// key has nothing to publish.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/key_service.hpp"

namespace kw::core::jwt {

struct SignRequest {
    nlohmann::json claims = nlohmann::json::object();
    std::int64_t ttl = 3600;            // exp = iat + ttl unless claims has exp
    std::optional<std::string> caller;  // GRADUAL rollout bucket
};

/// A compact JWS. Sets iat (and exp) unless present. Throws Error. When
/// `hsm_seconds` is given, it receives the time spent in the token
/// (SignResult::hsm_seconds, of both signatures if the key rotated meanwhile).
[[nodiscard]] std::string sign(KeyService& keys, std::string_view name, const SignRequest& request,
                               double* hsm_seconds = nullptr);

// The implicit noexcept move runs nlohmann::json's invariant assertion, which
// bugprone-exception-escape cannot see is safe.
// NOLINTNEXTLINE(bugprone-exception-escape)
struct Verified {
    bool valid = false;
    std::string reason;  // why not, when !valid
    std::string kid;
    nlohmann::json header;
    nlohmann::json claims;
};

/// Checks signature (by the header's kid, any version that may verify),
/// alg, exp and nbf (with `leeway` seconds).
[[nodiscard]] Verified verify(KeyService& keys, std::string_view name, std::string_view token, std::int64_t leeway = 0);

/// RFC 7517 JWK of one version's public key.
[[nodiscard]] nlohmann::json jwk(const ManagedKey& key, const KeyVersion& version);
/// RFC 7517 JWK Set of every published version (pre_active and active) of
/// every asymmetric jwt key.
[[nodiscard]] nlohmann::json jwks(KeyService& keys);

}  // namespace kw::core::jwt
