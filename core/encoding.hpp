#pragma once
// Text encodings of bytes. Base64 goes through OpenSSL's EVP encoder; hex and
// base62 are small enough to keep here.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kw::core {

[[nodiscard]] std::string to_hex(std::span<const std::uint8_t> bytes);
[[nodiscard]] std::optional<std::vector<std::uint8_t>> from_hex(std::string_view hex);
[[nodiscard]] std::string to_base64(std::span<const std::uint8_t> bytes);
[[nodiscard]] std::optional<std::vector<std::uint8_t>> from_base64(std::string_view text);
[[nodiscard]] std::string to_base64url(std::span<const std::uint8_t> bytes);  // no padding (JOSE)
/// Big-endian base62 of the bytes, left-padded with '0' to `width` characters.
[[nodiscard]] std::string to_base62(std::span<const std::uint8_t> bytes, std::size_t width = 0);

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace kw::core
