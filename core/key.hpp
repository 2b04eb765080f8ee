#pragma once
// The key model: a managed key and its versions.
//
// A ManagedKey is what admins name and policies match; the cryptographic
// material lives in its versions. Exactly one version is primary and signs;
// any version in a verify state (see can_verify) checks signatures.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/types.hpp"

namespace kw::core {

struct KeyVersion {
    int version = 1;
    std::string kid;  // short stable id: JWT kid, CKA_ID, signature prefix
    VersionState state = VersionState::active;
    bool primary = false;
    Residency residency = Residency::wrapped;
    UnixTime created_at = 0;
    UnixTime state_changed_at = 0;
    std::vector<std::uint8_t> wrapped_blob;  // wrapped residency: AES-KWP blob under the root key
    std::vector<std::uint8_t> public_key;    // asymmetric: SubjectPublicKeyInfo DER
};

struct ManagedKey {
    std::string id;  // UUID
    std::string name;
    KeyType type = KeyType::hmac;
    // Algorithm details: RSA size, EC curve, JWT alg (the JWT alg fixes the
    // underlying algorithm: HS256 -> HMAC, ES256 -> P-256, ...). For a plain
    // HMAC key rsa_bits holds the secret's size in bits (256, 384 or 512;
    // 0 = 256): one size column serves both families.
    unsigned rsa_bits = 0;
    std::optional<Curve> curve;
    std::optional<JwtAlg> jwt_alg;
    std::vector<std::string> scopes;
    std::string owner;
    std::map<std::string, std::string> labels;
    std::string policy;
    UnixTime created_at = 0;
    std::optional<UnixTime> expires_at;
    std::optional<UnixTime> revoked_at;
    // GRADUAL rotation in progress: this version signs for rollout_share
    // percent of callers (by a stable hash of the caller id).
    std::optional<std::string> rollout_kid;
    int rollout_share = 0;
    std::vector<KeyVersion> versions;

    [[nodiscard]] const KeyVersion* primary() const {
        for (const auto& v : versions) {
            if (v.primary) return &v;
        }
        return nullptr;
    }
    [[nodiscard]] const KeyVersion* version_by_kid(std::string_view kid) const {
        for (const auto& v : versions) {
            if (v.kid == kid) return &v;
        }
        return nullptr;
    }
    [[nodiscard]] bool expired(UnixTime now) const { return expires_at && *expires_at <= now; }
};

/// The underlying key family a key type (and JWT alg) signs with.
enum class Family { hmac, rsa, ecdsa, ed25519 };
[[nodiscard]] Family family_of(const ManagedKey& key);

}  // namespace kw::core
