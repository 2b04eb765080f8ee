#pragma once
// The audit log's use of the token: seals (HMAC) with the audit MAC key,
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
#include "token/session_copy.hpp"
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
    CK_OBJECT_HANDLE mac_key(const token::Session& s) { return mac_copy_.get(token_, s); }

    token::Token& token_;
    RootKeys roots_;
    token::SessionCopy mac_copy_;  // every seal and pseudonym is an HMAC: use a session copy
    std::vector<std::uint8_t> public_key_;
};

/// Checks a checkpoint signature with the public key alone (offline).
[[nodiscard]] bool verify_checkpoint(std::span<const std::uint8_t> spki, const Checkpoint& c);

}  // namespace kw::core::audit
