#pragma once
// The API-token string: <prefix>_<body><checksum>
//   prefix    [a-z0-9_]{1,32}, e.g. "kw_live": lets secret scanners find leaks
//   body      33 base62 characters = 24 random bytes (192 bits) from C_GenerateRandom
//   checksum  6 base62 characters: CRC-32 of "<prefix>_<body>"
// The checksum rejects typos and garbage before any store or HSM call. CRC-32
// detects every single-character change (any burst up to 32 bits).
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace kw::core::tokens {

inline constexpr std::size_t kBodyChars = 33;
inline constexpr std::size_t kChecksumChars = 6;
inline constexpr std::size_t kRandomBytes = 24;
inline constexpr std::size_t kDisplayChars = 6;  // body characters kept for display

[[nodiscard]] bool valid_prefix(std::string_view prefix);

/// Builds a token from a prefix and kRandomBytes random bytes.
[[nodiscard]] std::string format_token(std::string_view prefix, std::span<const std::uint8_t> random);

struct ParsedToken {
    std::string_view prefix;
    std::string_view body;
};

/// Checks shape and checksum; nullopt means MALFORMED.
[[nodiscard]] std::optional<ParsedToken> parse_token(std::string_view token);

/// "kw_live_AbC123..." : what may be shown after issue.
[[nodiscard]] std::string display_form(std::string_view token);

}  // namespace kw::core::tokens
