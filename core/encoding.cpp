#include "core/encoding.hpp"

#include <openssl/evp.h>

#include <algorithm>

namespace kw::core {

std::string to_hex(std::span<const std::uint8_t> bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (std::uint8_t b : bytes) {
        out.push_back(kDigits[b >> 4]);
        out.push_back(kDigits[b & 0x0f]);
    }
    return out;
}

std::optional<std::vector<std::uint8_t>> from_hex(std::string_view hex) {
    if (hex.size() % 2 != 0) return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::vector<std::uint8_t> out(hex.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        int hi = nibble(hex[2 * i]);
        int lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return out;
}

std::string to_base64(std::span<const std::uint8_t> bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::optional<std::vector<std::uint8_t>> from_base64(std::string_view text) {
    std::string clean;
    for (char c : text) {
        if (c != '\n' && c != '\r' && c != ' ' && c != '\t') clean.push_back(c);
    }
    if (clean.size() % 4 != 0) return std::nullopt;
    std::vector<std::uint8_t> out(clean.size() / 4 * 3 + 1);
    int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(clean.data()),
                            static_cast<int>(clean.size()));
    if (n < 0) return std::nullopt;
    // EVP_DecodeBlock counts padding as zero bytes: drop them.
    std::size_t pad = 0;
    if (!clean.empty() && clean.back() == '=') ++pad;
    if (clean.size() > 1 && clean[clean.size() - 2] == '=') ++pad;
    out.resize(static_cast<std::size_t>(n) - pad);
    return out;
}

std::string to_base64url(std::span<const std::uint8_t> bytes) {
    std::string s = to_base64(bytes);
    while (!s.empty() && s.back() == '=') s.pop_back();
    std::replace(s.begin(), s.end(), '+', '-');
    std::replace(s.begin(), s.end(), '/', '_');
    return s;
}

std::string to_base62(std::span<const std::uint8_t> bytes, std::size_t width) {
    static constexpr char kAlphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    std::vector<std::uint8_t> num(bytes.begin(), bytes.end());
    std::string out;
    // Repeated division of the big-endian number by 62.
    while (std::any_of(num.begin(), num.end(), [](std::uint8_t b) { return b != 0; })) {
        unsigned remainder = 0;
        for (auto& digit : num) {
            unsigned acc = remainder * 256 + digit;
            digit = static_cast<std::uint8_t>(acc / 62);
            remainder = acc % 62;
        }
        out.push_back(kAlphabet[remainder]);
    }
    while (out.size() < width) out.push_back('0');
    std::reverse(out.begin(), out.end());
    return out;
}

}  // namespace kw::core
