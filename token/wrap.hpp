#pragma once
// Key wrapping under the root key with CKM_AES_KEY_WRAP_PAD (RFC 5649).
//
// Wrapped residency: a managed key is generated as an extractable, sensitive
// session object, wrapped once, and the blob stored. On use the blob is
// unwrapped into a *non-extractable* session object, so the working copy can
// never be exported again, even wrapped.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "token/object.hpp"

namespace kw::token {

[[nodiscard]] std::vector<std::uint8_t> wrap_key(const Session& s, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key);

struct UnwrapSpec {
    CK_OBJECT_CLASS key_class = CKO_SECRET_KEY;  // or CKO_PRIVATE_KEY
    CK_KEY_TYPE key_type = CKK_GENERIC_SECRET;
    std::string label;
    std::vector<std::uint8_t> id;
};

/// Unwraps into an owned, non-extractable, sensitive session object.
[[nodiscard]] ObjectHandle unwrap_key(const Session& s, CK_OBJECT_HANDLE wrapping_key,
                                      std::span<const std::uint8_t> blob, const UnwrapSpec& spec);

}  // namespace kw::token
