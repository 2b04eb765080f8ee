#pragma once
// The audit log's use of the token: per-event HMAC with the audit MAC key,
// checkpoint signatures with the audit signing key (ECDSA P-256), and
// pseudonyms (HMAC'd identifiers) for values that must not appear in clear.
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/audit/event.hpp"
#include "core/root_keys.hpp"
#include "token/token.hpp"

namespace kw::core::audit {

class Keys {
public:
    Keys(token::Token& token, const RootKeys& roots);

    /// hex HMAC-SHA256(audit MAC key, hash) for each hash, in one session.
    [[nodiscard]] std::vector<std::string> macs(std::span<const std::string> hashes);
    [[nodiscard]] bool check_mac(std::string_view hash, std::string_view mac);
    /// hex DER ECDSA signature over checkpoint_payload(c).
    [[nodiscard]] std::string sign_checkpoint(const Checkpoint& c);
    /// SubjectPublicKeyInfo DER of the audit signing key.
    [[nodiscard]] const std::vector<std::uint8_t>& public_key() const noexcept { return public_key_; }
    /// Stable, non-reversible stand-in for a sensitive value (first 16 bytes
    /// of an HMAC under the audit key, hex).
    [[nodiscard]] std::string pseudonym(std::string_view value);

private:
    // The audit MAC key copied into a session object: HMAC with a session key
    // costs about half of one with a token object in SoftHSM (C_SignInit
    // dominates), and every audit event needs one. Re-made after fork.
    CK_OBJECT_HANDLE mac_key(const token::Session& s);

    token::Token& token_;
    RootKeys roots_;
    std::mutex copy_mutex_;
    CK_OBJECT_HANDLE mac_copy_ = CK_INVALID_HANDLE;
    std::uint64_t mac_copy_generation_ = 0;
    std::vector<std::uint8_t> public_key_;
};

/// Checks a checkpoint signature with the public key alone (offline).
[[nodiscard]] bool verify_checkpoint(std::span<const std::uint8_t> spki, const Checkpoint& c);

}  // namespace kw::core::audit
