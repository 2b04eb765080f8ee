#pragma once
// The local binary protocol between keywardend and the faces in client/
// (PKCS#11 module, OpenSSL provider). Specified in docs/local-protocol.md;
// this header is the one place its numbers are defined.
//
// A frame is a u32 big-endian length (of what follows, at most
// kMaxFrame) and then the message. Requests start with a u8 Op, responses
// with a u16 Status; on any status but ok the rest is one text (the reason).
// One request is answered before the next is read: a client keeps one
// connection per calling thread instead of multiplexing.
#include <cstdint>
#include <optional>
#include <string_view>

namespace kw::wire {

inline constexpr std::uint16_t kProtocolVersion = 2;  // 2: sign_check and sign answer the keys generation
inline constexpr std::uint32_t kMaxFrame = 1U << 20;  // 1 MiB, as the HTTP body limit

enum class Op : std::uint8_t {
    // u16 version, bytes credential (an API token), text client name
    //   -> text credential key name, text credential kid, u64 expires_at (0: never)
    hello = 1,
    // -> u32 count, then per key: text name, text type, u8 Family, u8 can_sign,
    //    text signing kid, u32 versions, per version: text kid, u8 can_verify, bytes SPKI DER (empty for HMAC)
    list_keys = 2,
    // text key, u8 Mechanism -> text kid (the version that would sign)
    sign_check = 3,
    // text key, u8 Mechanism, bytes data -> text kid, bytes signature
    sign = 4,
    // text key, text kid ("" = any version allowed to verify), u8 Mechanism, bytes data, bytes signature
    //   -> u8 valid, text kid
    verify = 5,
    // u32 length (at most 1024) -> bytes
    random = 6,
    // -> nothing
    ping = 7,
};

enum class Status : std::uint16_t {
    ok = 0,
    bad_request = 1,        // malformed frame or message
    not_authenticated = 2,  // no successful hello on this connection
    auth_failed = 3,        // the credential is unknown, malformed, revoked, suspended or used up
    auth_expired = 4,
    forbidden = 5,  // the credential's scopes do not cover this key
    unknown_key = 6,
    key_not_usable = 7,  // suspended, revoked, compromised, destroyed, no primary
    key_expired = 8,
    rate_limited = 9,
    mechanism_invalid = 10,  // the mechanism does not suit the key
    data_invalid = 11,       // wrong digest length and the like
    audit_failure = 12,      // fail closed: the event could not be written
    unavailable = 13,        // shutting down or the HSM is unreachable
    internal = 14,
    version_mismatch = 15,
};

[[nodiscard]] std::string_view to_string(Status s);

/// Key family, as the faces need it to build PKCS#11 objects.
enum class Family : std::uint8_t { hmac = 1, rsa = 2, ec = 3, ed25519 = 4 };

/// Mechanisms on the wire. Pre-hashed forms carry the digest (the face hashes
/// multi-part input itself); the rest carry the whole message.
enum class Mechanism : std::uint8_t {
    hmac_sha256 = 1,
    hmac_sha384 = 2,
    hmac_sha512 = 3,
    ecdsa_prehashed = 10,  // digest in, raw r||s out
    rsa_pkcs1_raw = 20,    // encoded DigestInfo in (CKM_RSA_PKCS)
    rsa_pss_prehashed_sha256 = 21,
    rsa_pss_prehashed_sha384 = 22,
    rsa_pss_prehashed_sha512 = 23,
    eddsa = 30,
};

}  // namespace kw::wire
