#include "core/jwt/jwt.hpp"

#include <openssl/core_names.h>
#include <openssl/x509.h>

#include "core/crypto/ossl.hpp"
#include "core/encoding.hpp"
#include "core/error.hpp"

namespace kw::core::jwt {
namespace {

std::optional<std::vector<std::uint8_t>> from_base64url(std::string_view s) {
    std::string t(s);
    for (char& c : t) {
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (c == '+' || c == '/' || c == '=')
            return std::nullopt;
    }
    while (t.size() % 4 != 0) t.push_back('=');
    return from_base64(t);
}

std::string b64url(std::string_view s) {
    return to_base64url(as_bytes(s));
}

std::vector<std::uint8_t> bn_param(EVP_PKEY* key, const char* name) {
    BIGNUM* bn = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &bn) != 1)
        throw Error(ErrorKind::invalid_argument, "cannot read RSA parameter");
    ossl::Bignum owned(bn);
    std::vector<std::uint8_t> out(static_cast<std::size_t>(BN_num_bytes(bn)));
    BN_bn2bin(bn, out.data());
    return out;
}

}  // namespace

std::string sign(KeyService& keys, std::string_view name, const SignRequest& request, double* hsm_seconds) {
    ManagedKey key = keys.get(name);
    if (key.type != KeyType::jwt || !key.jwt_alg) {
        throw Error(ErrorKind::invalid_argument, "'" + key.name + "' is not a jwt key");
    }
    if (!request.claims.is_object()) throw Error(ErrorKind::invalid_argument, "JWT claims must be a JSON object");
    nlohmann::json claims = request.claims;
    const UnixTime now = keys.clock().now();
    if (!claims.contains("iat")) claims["iat"] = now;
    if (!claims.contains("exp")) claims["exp"] = claims["iat"].get<std::int64_t>() + request.ttl;
    // The kid must name the version that will sign; resolve it the same way
    // KeyService::sign does (primary, or the GRADUAL rollout version).
    const KeyVersion* v = key.primary();
    if (key.rollout_kid && request.caller && rollout_bucket(key.id, *request.caller) < key.rollout_share) {
        if (const KeyVersion* next = key.version_by_kid(*key.rollout_kid); next && can_sign(next->state)) v = next;
    }
    if (v == nullptr) throw Error(ErrorKind::not_permitted, "'" + key.name + "' has no primary version");
    nlohmann::json header{{"alg", to_string(*key.jwt_alg)}, {"typ", "JWT"}, {"kid", v->kid}};
    const std::string input = b64url(header.dump()) + "." + b64url(claims.dump());
    SignOptions o;
    o.format = SignatureFormat::raw;
    o.caller = request.caller;
    SignResult s = keys.sign(key.name, as_bytes(input), o);
    if (hsm_seconds != nullptr) *hsm_seconds = s.hsm_seconds;
    if (s.kid != v->kid) {
        // The key rotated between our read and the signature: sign again
        // with a header that names the version that actually signed.
        header["kid"] = s.kid;
        const std::string again = b64url(header.dump()) + "." + b64url(claims.dump());
        s = keys.sign(key.name, as_bytes(again), o);
        if (hsm_seconds != nullptr) *hsm_seconds += s.hsm_seconds;
        return again + "." + to_base64url(s.signature);
    }
    return input + "." + to_base64url(s.signature);
}

Verified verify(KeyService& keys, std::string_view name, std::string_view token, std::int64_t leeway) {
    Verified out;
    const auto d1 = token.find('.');
    const auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
    if (d1 == std::string_view::npos || d2 == std::string_view::npos ||
        token.find('.', d2 + 1) != std::string_view::npos) {
        out.reason = "not a compact JWS (three dot-separated parts)";
        return out;
    }
    auto h = from_base64url(token.substr(0, d1));
    auto c = from_base64url(token.substr(d1 + 1, d2 - d1 - 1));
    auto sig = from_base64url(token.substr(d2 + 1));
    if (!h || !c || !sig) {
        out.reason = "bad base64url";
        return out;
    }
    out.header = nlohmann::json::parse(h->begin(), h->end(), nullptr, false);
    out.claims = nlohmann::json::parse(c->begin(), c->end(), nullptr, false);
    if (out.header.is_discarded() || out.claims.is_discarded() || !out.header.is_object() || !out.claims.is_object()) {
        out.reason = "header or claims are not JSON objects";
        return out;
    }
    ManagedKey key = keys.get(name);
    if (!key.jwt_alg || out.header.value("alg", "") != to_string(*key.jwt_alg)) {
        out.reason = "alg does not match the key";  // also refuses "none"
        return out;
    }
    out.kid = out.header.value("kid", "");
    SignOptions o;
    o.format = SignatureFormat::raw;
    VerifyResult r = keys.verify(key.name, as_bytes(token.substr(0, d2)), *sig, o,
                                 out.kid.empty() ? std::nullopt : std::optional<std::string_view>(out.kid));
    if (!r.valid) {
        out.reason = "signature does not verify";
        return out;
    }
    const UnixTime now = keys.clock().now();
    if (out.claims.contains("exp") && out.claims["exp"].is_number() &&
        now > out.claims["exp"].get<std::int64_t>() + leeway) {
        out.reason = "expired";
        return out;
    }
    if (out.claims.contains("nbf") && out.claims["nbf"].is_number() &&
        now + leeway < out.claims["nbf"].get<std::int64_t>()) {
        out.reason = "not yet valid (nbf)";
        return out;
    }
    out.valid = true;
    out.kid = r.kid;
    return out;
}

nlohmann::json jwk(const ManagedKey& key, const KeyVersion& version) {
    const unsigned char* p = version.public_key.data();
    ossl::Pkey pk(d2i_PUBKEY(nullptr, &p, static_cast<long>(version.public_key.size())));
    if (!pk) throw Error(ErrorKind::invalid_argument, "version " + version.kid + " has no public key");
    nlohmann::json j{{"kid", version.kid}, {"use", "sig"}};
    if (key.jwt_alg) j["alg"] = to_string(*key.jwt_alg);
    switch (EVP_PKEY_get_base_id(pk.get())) {
        case EVP_PKEY_RSA:
            j["kty"] = "RSA";
            j["n"] = to_base64url(bn_param(pk.get(), OSSL_PKEY_PARAM_RSA_N));
            j["e"] = to_base64url(bn_param(pk.get(), OSSL_PKEY_PARAM_RSA_E));
            break;
        case EVP_PKEY_EC: {
            std::vector<std::uint8_t> point(133);
            std::size_t len = 0;
            if (EVP_PKEY_get_octet_string_param(pk.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size(), &len) !=
                    1 ||
                len < 3 || point[0] != 0x04) {
                throw Error(ErrorKind::invalid_argument, "cannot read EC point");
            }
            const std::size_t field = (len - 1) / 2;
            j["kty"] = "EC";
            j["crv"] = field == 32 ? "P-256" : "P-384";
            j["x"] = to_base64url(std::span<const std::uint8_t>(point.data() + 1, field));
            j["y"] = to_base64url(std::span<const std::uint8_t>(point.data() + 1 + field, field));
            break;
        }
        case EVP_PKEY_ED25519: {
            std::vector<std::uint8_t> raw(32);
            std::size_t len = raw.size();
            EVP_PKEY_get_raw_public_key(pk.get(), raw.data(), &len);
            j["kty"] = "OKP";
            j["crv"] = "Ed25519";
            j["x"] = to_base64url(std::span<const std::uint8_t>(raw.data(), len));
            break;
        }
        default: throw Error(ErrorKind::invalid_argument, "unsupported public key type");
    }
    return j;
}

nlohmann::json jwks(KeyService& keys) {
    nlohmann::json set = nlohmann::json::array();
    for (const auto& key : keys.store().list_keys()) {
        if (key.type != KeyType::jwt || !key.jwt_alg || *key.jwt_alg == JwtAlg::HS256 || key.revoked_at) continue;
        for (const auto& v : key.versions) {
            if (v.state == VersionState::pre_active || v.state == VersionState::active) set.push_back(jwk(key, v));
        }
    }
    return nlohmann::json{{"keys", set}};
}

}  // namespace kw::core::jwt
