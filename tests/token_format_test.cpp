// Pure unit tests of the API-token string format: no token, no store.
#include <doctest/doctest.h>

#include <boost/crc.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "core/encoding.hpp"
#include "core/tokens/format.hpp"
#include "core/tokens/token_service.hpp"

using namespace kw::core;
using namespace kw::core::tokens;

namespace {

const std::string kBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

std::vector<std::uint8_t> bytes_from(std::uint8_t seed) {
    std::vector<std::uint8_t> r(kRandomBytes);
    for (std::size_t i = 0; i < r.size(); ++i) r[i] = static_cast<std::uint8_t>(seed + 37 * i + (i * i) % 11);
    return r;
}

// An independent implementation of the checksum (CRC-32 of "<prefix>_<body>",
// big-endian, base62, 6 characters), so the bad-shape tests below can build
// strings whose checksum is RIGHT and prove the shape check rejects them on
// its own, not merely the checksum.
std::string with_checksum(const std::string& prefix_and_body) {
    boost::crc_32_type crc;
    crc.process_bytes(prefix_and_body.data(), prefix_and_body.size());
    const std::uint32_t v = crc.checksum();
    const std::vector<std::uint8_t> b{static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                                      static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
    return prefix_and_body + to_base62(b, kChecksumChars);
}

bool all_base62(std::string_view s) {
    return s.find_first_not_of(kBase62) == std::string_view::npos;
}

}  // namespace

TEST_CASE("format_token / parse_token round trip for several prefixes") {
    for (const std::string prefix : {"kw_live", "kw_test", "a", "x_y_z"}) {
        CAPTURE(prefix);
        for (std::uint8_t seed : {0, 1, 200}) {
            const auto random = bytes_from(seed);
            const std::string t = format_token(prefix, random);
            CAPTURE(t);
            REQUIRE(t.size() == prefix.size() + 1 + kBodyChars + kChecksumChars);
            CHECK(t.substr(0, prefix.size() + 1) == prefix + "_");
            CHECK(all_base62(t.substr(prefix.size() + 1)));
            auto parsed = parse_token(t);
            REQUIRE(parsed);
            CHECK(parsed->prefix == prefix);
            CHECK(parsed->body == t.substr(prefix.size() + 1, kBodyChars));
            // The body is the random bytes, base62, fixed width.
            CHECK(parsed->body == to_base62(random, kBodyChars));
            // Our independent checksum agrees with the library's.
            CHECK(with_checksum(t.substr(0, t.size() - kChecksumChars)) == t);

            const std::string shown = display_form(t);
            CHECK(shown == prefix + "_" + std::string(parsed->body.substr(0, kDisplayChars)) + "...");
            CHECK(shown.size() == prefix.size() + 1 + kDisplayChars + 3);
            CHECK(shown.find(t.substr(prefix.size() + 1 + kDisplayChars)) == std::string::npos);
        }
    }
    // Different random bytes, different tokens; all-zero and all-0xff bodies still fit.
    CHECK(format_token("kw_live", bytes_from(1)) != format_token("kw_live", bytes_from(2)));
    std::vector<std::uint8_t> zeros(kRandomBytes, 0), ones(kRandomBytes, 0xff);
    CHECK(parse_token(format_token("kw_live", zeros)));
    CHECK(parse_token(format_token("kw_live", ones)));
    CHECK(format_token("kw_live", ones).size() == 8 + kBodyChars + kChecksumChars);
    CHECK(display_form("kw_live_garbage") == "(malformed)");
}

TEST_CASE("the checksum catches every single-character substitution, deletion and insertion") {
    // Every base62 character, '_' and a few others that are not allowed at all.
    std::string alphabet = kBase62 + "_-.+/= ~\x01\x7f";
    alphabet.push_back('\0');
    alphabet.push_back(static_cast<char>(0xc3));

    for (const std::string prefix : {"kw_live", "x_y_z"}) {
        const std::string t = format_token(prefix, bytes_from(42));
        REQUIRE(parse_token(t));
        CAPTURE(t);
        std::vector<std::string> accepted;  // mutants parse_token wrongly accepted
        std::size_t tried = 0;

        for (std::size_t pos = 0; pos < t.size(); ++pos) {
            for (char c : alphabet) {
                std::string m = t;
                m[pos] = c;
                if (m == t) continue;
                ++tried;
                if (parse_token(m)) accepted.push_back("substitute " + std::to_string(pos) + ": " + m);
            }
        }
        for (std::size_t pos = 0; pos < t.size(); ++pos) {
            std::string m = t;
            m.erase(pos, 1);
            ++tried;
            if (parse_token(m)) accepted.push_back("delete " + std::to_string(pos) + ": " + m);
        }
        for (std::size_t pos = 0; pos <= t.size(); ++pos) {
            for (char c : alphabet) {
                std::string m = t;
                m.insert(m.begin() + static_cast<std::ptrdiff_t>(pos), c);
                ++tried;
                if (parse_token(m)) accepted.push_back("insert " + std::to_string(pos) + ": " + m);
            }
        }
        // Substitutions alone: every position, every character but the original.
        CHECK(tried >= t.size() * (alphabet.size() - 1) + t.size() + (t.size() + 1) * alphabet.size());
        INFO("first wrongly accepted: " << (accepted.empty() ? std::string("-") : accepted.front()));
        CHECK(accepted.empty());
        CHECK(parse_token(t));  // and the original still parses
    }
}

TEST_CASE("bad shapes are MALFORMED even with a correct checksum") {
    const std::string body = to_base62(bytes_from(7), kBodyChars);
    REQUIRE(body.size() == kBodyChars);
    // Sanity: the helper builds valid tokens.
    REQUIRE(parse_token(with_checksum("kw_live_" + body)));

    CHECK_FALSE(parse_token(""));
    CHECK_FALSE(parse_token("_"));
    CHECK_FALSE(parse_token("kw_live"));
    CHECK_FALSE(parse_token("kw_live_"));
    // No underscore at all.
    CHECK_FALSE(parse_token(with_checksum("kwlive" + body)));
    CHECK_FALSE(parse_token(with_checksum(body)));
    // Uppercase prefix (format_token does not check the prefix; parse_token must).
    CHECK_FALSE(parse_token(with_checksum("KW_LIVE_" + body)));
    CHECK_FALSE(parse_token(with_checksum("Kw_live_" + body)));
    CHECK_FALSE(parse_token(format_token("KW_LIVE", bytes_from(7))));
    // Prefix of 32 characters is fine, 33 is not.
    CHECK(parse_token(with_checksum(std::string(32, 'p') + "_" + body)));
    CHECK_FALSE(parse_token(with_checksum(std::string(33, 'p') + "_" + body)));
    CHECK_FALSE(parse_token(format_token(std::string(33, 'p'), bytes_from(7))));
    // Prefix starting or ending with '_', or with other characters.
    CHECK_FALSE(parse_token(with_checksum("_kw_" + body)));
    CHECK_FALSE(parse_token(with_checksum("kw__" + body)));
    CHECK_FALSE(parse_token(with_checksum("kw-live_" + body)));
    CHECK_FALSE(parse_token(with_checksum("kw.live_" + body)));
    CHECK_FALSE(parse_token(with_checksum("_" + body)));  // empty prefix
    // Body too short / too long by one and by several.
    for (std::size_t n : {1u, 2u, 5u, 10u, 20u, 32u}) {
        CAPTURE(n);
        CHECK_FALSE(parse_token(with_checksum("kw_live_" + body.substr(0, kBodyChars - n))));
    }
    CHECK_FALSE(parse_token(with_checksum("kw_live_" + body + "A")));
    CHECK_FALSE(parse_token(with_checksum("kw_live_" + body + "AB")));
    CHECK_FALSE(parse_token(with_checksum("kw_live_" + body + body)));
    // Non-base62 characters in the body, with the checksum computed over them.
    for (char bad : {'-', '_', '+', '/', '=', ' ', '.', '\0'}) {
        CAPTURE(static_cast<int>(bad));
        std::string b = body;
        b[10] = bad;
        CHECK_FALSE(parse_token(with_checksum("kw_live_" + b)));
    }
    // Non-base62 in the checksum itself.
    std::string t = with_checksum("kw_live_" + body);
    t.back() = '-';
    CHECK_FALSE(parse_token(t));
    // Way too long.
    CHECK_FALSE(parse_token(std::string(500, 'a')));
}

TEST_CASE("valid_prefix rules") {
    CHECK(valid_prefix("kw_live"));
    CHECK(valid_prefix("kw_test"));
    CHECK(valid_prefix("a"));
    CHECK(valid_prefix("0"));
    CHECK(valid_prefix("x_y_z"));
    CHECK(valid_prefix("abc123"));
    CHECK(valid_prefix(std::string(32, 'z')));
    CHECK_FALSE(valid_prefix(std::string(33, 'z')));
    CHECK_FALSE(valid_prefix(""));
    CHECK_FALSE(valid_prefix("_"));
    CHECK_FALSE(valid_prefix("_kw"));
    CHECK_FALSE(valid_prefix("kw_"));
    CHECK_FALSE(valid_prefix("KW"));
    CHECK_FALSE(valid_prefix("kW_live"));
    CHECK_FALSE(valid_prefix("kw-live"));
    CHECK_FALSE(valid_prefix("kw live"));
    CHECK_FALSE(valid_prefix("kw.live"));
    CHECK_FALSE(valid_prefix("kw/live"));
    CHECK_FALSE(valid_prefix(std::string("kw\0live", 7)));
    CHECK_FALSE(valid_prefix("k\xc3\xa9"));
}

TEST_CASE("scope_allows: exact, glob, admin, read_write") {
    using V = std::vector<std::string>;
    // Exact.
    CHECK(scope_allows(V{"sign:payments"}, "sign:payments"));
    CHECK_FALSE(scope_allows(V{"sign:payments"}, "sign:payment"));
    CHECK_FALSE(scope_allows(V{"sign:payments"}, "sign:payments2"));
    CHECK_FALSE(scope_allows(V{"sign:payments"}, "verify:payments"));
    CHECK_FALSE(scope_allows(V{}, "sign:payments"));
    CHECK_FALSE(scope_allows(V{}, ""));
    // Glob in the grant.
    const V glob{"sign:payments-*"};
    CHECK(scope_allows(glob, "sign:payments-eu"));
    CHECK(scope_allows(glob, "sign:payments-"));
    CHECK(scope_allows(glob, "sign:payments-us-east"));
    CHECK_FALSE(scope_allows(glob, "sign:payments"));
    CHECK_FALSE(scope_allows(glob, "sign:billing-eu"));
    CHECK_FALSE(scope_allows(glob, "verify:payments-eu"));
    // A glob in the REQUIRED scope grants nothing.
    CHECK_FALSE(scope_allows(V{"sign:payments-eu"}, "sign:payments-*"));
    // admin allows everything.
    CHECK(scope_allows(V{"admin"}, "sign:payments"));
    CHECK(scope_allows(V{"admin"}, "read_write"));
    CHECK(scope_allows(V{"admin"}, "anything:at-all"));
    // read_write allows read_only, not vice versa.
    CHECK(scope_allows(V{"read_write"}, "read_only"));
    CHECK(scope_allows(V{"read_write"}, "read_write"));
    CHECK_FALSE(scope_allows(V{"read_only"}, "read_write"));
    CHECK_FALSE(scope_allows(V{"read_write"}, "admin"));
    CHECK_FALSE(scope_allows(V{"read_only"}, "admin"));
    // Any one grant suffices.
    CHECK(scope_allows(V{"read_only", "sign:payments-*"}, "sign:payments-eu"));
    CHECK_FALSE(scope_allows(V{"read_only", "sign:payments-*"}, "sign:billing"));
}
