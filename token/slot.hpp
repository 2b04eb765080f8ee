#pragma once
// Finding the token to use: by label, by serial number, or by an RFC 7512
// `pkcs11:` URI (parsed with p11-kit's parser, so every attribute it knows,
// token=, serial=, manufacturer=, model=, slot-id=, is honoured).
#include <optional>
#include <string>
#include <vector>

#include "token/module.hpp"

namespace kw::token {

struct TokenSelector {
    std::optional<std::string> label;
    std::optional<std::string> serial;
    std::optional<std::string> uri;  // "pkcs11:token=keywarden;serial=..."
};

struct TokenInfo {
    CK_SLOT_ID slot = 0;
    std::string label;
    std::string serial;
    std::string manufacturer;
    std::string model;
    bool initialized = false;
    bool user_pin_initialized = false;
};

/// The one initialised token that matches; throws TokenError(token_not_found)
/// naming what was looked for and what exists.
[[nodiscard]] TokenInfo find_token(const Module& module, const TokenSelector& selector);

/// Every token present, initialised or not.
[[nodiscard]] std::vector<TokenInfo> list_tokens(const Module& module);

/// Trims the blank padding PKCS#11 puts in fixed-width text fields.
[[nodiscard]] std::string trim_padded(const unsigned char* text, std::size_t size);

}  // namespace kw::token
