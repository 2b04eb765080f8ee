#include "core/tokens/format.hpp"

#include <boost/crc.hpp>

#include "core/encoding.hpp"

namespace kw::core::tokens {
namespace {

bool is_base62(char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

std::string checksum(std::string_view prefix_and_body) {
    boost::crc_32_type crc;
    crc.process_bytes(prefix_and_body.data(), prefix_and_body.size());
    const std::uint32_t v = crc.checksum();
    const std::uint8_t bytes[4] = {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                                   static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
    return to_base62(bytes, kChecksumChars);
}

}  // namespace

bool valid_prefix(std::string_view prefix) {
    if (prefix.empty() || prefix.size() > 32 || prefix.front() == '_' || prefix.back() == '_') return false;
    for (char c : prefix) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

std::string format_token(std::string_view prefix, std::span<const std::uint8_t> random) {
    std::string t(prefix);
    t += '_';
    t += to_base62(random, kBodyChars);
    t += checksum(t);
    return t;
}

std::optional<ParsedToken> parse_token(std::string_view token) {
    constexpr std::size_t tail = kBodyChars + kChecksumChars;
    if (token.size() < tail + 2 || token.size() > tail + 33) return std::nullopt;
    const std::size_t sep = token.size() - tail - 1;
    if (token[sep] != '_') return std::nullopt;
    std::string_view prefix = token.substr(0, sep);
    if (!valid_prefix(prefix)) return std::nullopt;
    std::string_view rest = token.substr(sep + 1);
    for (char c : rest) {
        if (!is_base62(c)) return std::nullopt;
    }
    std::string_view body = rest.substr(0, kBodyChars);
    if (checksum(token.substr(0, sep + 1 + kBodyChars)) != rest.substr(kBodyChars)) return std::nullopt;
    return ParsedToken{prefix, body};
}

std::string display_form(std::string_view token) {
    auto parsed = parse_token(token);
    if (!parsed) return "(malformed)";
    return std::string(parsed->prefix) + "_" + std::string(parsed->body.substr(0, kDisplayChars)) + "...";
}

}  // namespace kw::core::tokens
