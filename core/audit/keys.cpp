#include "core/audit/keys.hpp"

#include "core/crypto/public_key.hpp"
#include "core/encoding.hpp"
#include "token/public_key.hpp"
#include "token/sign.hpp"

namespace kw::core::audit {

Keys::Keys(token::Token& token, const RootKeys& roots) : token_(token), roots_(roots), mac_copy_(roots_.audit_mac) {
    auto lease = token_.session();
    public_key_ = spki_from_attributes(token::read_public_key(lease.session(), roots_.audit_verify));
}

std::vector<std::string> Keys::macs(std::span<const std::string> hashes) {
    std::vector<std::string> out;
    out.reserve(hashes.size());
    auto lease = token_.session();
    const CK_OBJECT_HANDLE key = mac_key(lease.session());
    for (const auto& h : hashes) {
        out.push_back(to_hex(token::sign(lease.session(), key, token::SignMechanism::hmac_sha256, as_bytes(h))));
    }
    return out;
}

bool Keys::check_mac(std::string_view hash, std::string_view mac) {
    auto raw = from_hex(mac);
    if (!raw || raw->size() != 32) return false;
    auto lease = token_.session();
    return token::verify(lease.session(), mac_key(lease.session()), token::SignMechanism::hmac_sha256, as_bytes(hash),
                         *raw);
}

std::string Keys::sign_checkpoint(const Checkpoint& c) {
    const std::string payload = checkpoint_payload(c);
    auto lease = token_.session();
    auto raw = token::sign(lease.session(), roots_.audit_sign, token::SignMechanism::ecdsa_sha256, as_bytes(payload));
    return to_hex(ecdsa_raw_to_der(raw));
}

std::string Keys::pseudonym(std::string_view value) {
    auto lease = token_.session();
    auto mac =
        token::sign(lease.session(), mac_key(lease.session()), token::SignMechanism::hmac_sha256, as_bytes(value));
    mac.resize(16);
    return to_hex(mac);
}

bool verify_checkpoint(std::span<const std::uint8_t> spki, const Checkpoint& c) {
    auto sig = from_hex(c.signature);
    if (!sig) return false;
    const std::string payload = checkpoint_payload(c);
    try {
        return verify_with_public_key(spki, token::SignMechanism::ecdsa_sha256, as_bytes(payload), *sig);
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace kw::core::audit
