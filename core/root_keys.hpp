#pragma once
// The token-resident keys everything else hangs from (created by
// `hsm-keytool init`, all non-extractable token objects):
//   root wrapping key   AES-256, wraps every managed key of wrapped residency
//   token pepper v1     HMAC key for API-token digests
//   audit MAC key       HMAC key for audit events
//   audit signing key   ECDSA P-256 pair for audit checkpoints
// They are found once at start-up by label (the only C_FindObjects outside
// benchmarks) and addressed by handle after that.
#include <map>
#include <string>

#include "token/token.hpp"

namespace kw::core {

struct RootKeys {
    CK_OBJECT_HANDLE wrap = CK_INVALID_HANDLE;
    std::map<int, CK_OBJECT_HANDLE> peppers;  // version -> handle
    CK_OBJECT_HANDLE audit_mac = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE audit_sign = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE audit_verify = CK_INVALID_HANDLE;

    [[nodiscard]] int current_pepper() const { return peppers.empty() ? 0 : peppers.rbegin()->first; }
};

inline constexpr const char* kRootWrapLabel = "keywarden-root-wrap";
inline constexpr const char* kPepperLabelPrefix = "keywarden-pepper-v";
inline constexpr const char* kAuditMacLabel = "keywarden-audit-mac";
inline constexpr const char* kAuditSignLabel = "keywarden-audit-sign";

/// Creates whichever root keys are missing; returns the labels it created.
std::vector<std::string> init_root_keys(token::Token& token);
/// Adds the next token-pepper version; returns its number.
int add_pepper(token::Token& token, const RootKeys& current);
/// Finds the root keys; throws Error(not_initialized) if any is missing.
[[nodiscard]] RootKeys load_root_keys(token::Token& token);

}  // namespace kw::core
