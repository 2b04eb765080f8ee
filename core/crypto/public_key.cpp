#include "core/crypto/public_key.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/crypto/ossl.hpp"
#include "core/error.hpp"

namespace kw::core {

namespace ossl {
std::string last_error() {
    unsigned long code = ERR_peek_last_error();
    if (code == 0) return "unknown OpenSSL error";
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}
}  // namespace ossl

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw Error(ErrorKind::invalid_argument, what + ": " + ossl::last_error());
}

// CKA_EC_POINT is a DER OCTET STRING holding the point; some tokens return
// the bare point. Accept both.
std::span<const std::uint8_t> unwrap_octet_string(std::span<const std::uint8_t> der) {
    if (der.size() >= 2 && der[0] == 0x04) {
        std::size_t len = der[1];
        std::size_t header = 2;
        if (len == 0x81 && der.size() >= 3) {
            len = der[2];
            header = 3;
        } else if (len == 0x82 && der.size() >= 4) {
            len = (static_cast<std::size_t>(der[2]) << 8) | der[3];
            header = 4;
        }
        if (header + len == der.size()) return der.subspan(header);
    }
    return der;
}

const char* curve_name(std::span<const std::uint8_t> oid) {
    static const std::uint8_t p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    static const std::uint8_t p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
    if (std::equal(oid.begin(), oid.end(), std::begin(p256), std::end(p256))) return "P-256";
    if (std::equal(oid.begin(), oid.end(), std::begin(p384), std::end(p384))) return "P-384";
    return nullptr;
}

ossl::Pkey pkey_from_attributes(const token::PublicKeyAttributes& a) {
    if (a.key_type == CKK_EC_EDWARDS) {
        auto point = unwrap_octet_string(a.ec_point);
        ossl::Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, point.data(), point.size()));
        if (!key) fail("Ed25519 public key");
        return key;
    }
    ossl::ParamBld bld(OSSL_PARAM_BLD_new());
    const char* type = nullptr;
    ossl::Bignum n;
    ossl::Bignum e;
    if (a.key_type == CKK_RSA) {
        type = "RSA";
        n.reset(BN_bin2bn(a.modulus.data(), static_cast<int>(a.modulus.size()), nullptr));
        e.reset(BN_bin2bn(a.public_exponent.data(), static_cast<int>(a.public_exponent.size()), nullptr));
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
    } else if (a.key_type == CKK_EC) {
        type = "EC";
        const char* curve = curve_name(a.ec_params);
        if (curve == nullptr) throw Error(ErrorKind::invalid_argument, "unsupported EC curve");
        auto point = unwrap_octet_string(a.ec_point);
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, curve, 0);
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    } else {
        throw Error(ErrorKind::invalid_argument, "unsupported public key type");
    }
    ossl::Params params(OSSL_PARAM_BLD_to_param(bld.get()));
    ossl::PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* raw = nullptr;
    if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        fail("public key from token attributes");
    }
    return ossl::Pkey(raw);
}

ossl::Pkey pkey_from_spki(std::span<const std::uint8_t> spki) {
    ERR_clear_error();
    if (spki.empty()) throw Error(ErrorKind::invalid_argument, "no public key stored for this version");
    const unsigned char* p = spki.data();
    ossl::Pkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
    if (!key) fail("stored public key");
    return key;
}

}  // namespace

std::vector<std::uint8_t> spki_from_attributes(const token::PublicKeyAttributes& attrs) {
    ossl::Pkey key = pkey_from_attributes(attrs);
    int len = i2d_PUBKEY(key.get(), nullptr);
    if (len <= 0) fail("encode public key");
    std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
    unsigned char* p = der.data();
    i2d_PUBKEY(key.get(), &p);
    return der;
}

std::string spki_to_pem(std::span<const std::uint8_t> spki) {
    ossl::Pkey key = pkey_from_spki(spki);
    ossl::Bio bio(BIO_new(BIO_s_mem()));
    if (PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1) fail("PEM encode");
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(len));
}

std::vector<std::uint8_t> pem_to_spki(std::string_view pem) {
    ERR_clear_error();
    ossl::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    ossl::Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!key) fail("not a PEM public key");
    int len = i2d_PUBKEY(key.get(), nullptr);
    std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
    unsigned char* p = der.data();
    i2d_PUBKEY(key.get(), &p);
    return der;
}

std::vector<std::uint8_t> ecdsa_raw_to_der(std::span<const std::uint8_t> raw) {
    if (raw.empty() || raw.size() % 2 != 0) throw Error(ErrorKind::invalid_argument, "ECDSA signature has odd length");
    std::size_t half = raw.size() / 2;
    ossl::EcdsaSig sig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(raw.data(), static_cast<int>(half), nullptr);
    BIGNUM* s = BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr);
    ECDSA_SIG_set0(sig.get(), r, s);  // takes ownership of r and s
    int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
    unsigned char* p = der.data();
    i2d_ECDSA_SIG(sig.get(), &p);
    return der;
}

std::vector<std::uint8_t> ecdsa_der_to_raw(std::span<const std::uint8_t> der, std::size_t field) {
    const unsigned char* p = der.data();
    ossl::EcdsaSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
    if (!sig || p != der.data() + der.size()) throw Error(ErrorKind::invalid_argument, "not a DER ECDSA signature");
    std::vector<std::uint8_t> raw(2 * field);
    if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), raw.data(), static_cast<int>(field)) < 0 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), raw.data() + field, static_cast<int>(field)) < 0) {
        throw Error(ErrorKind::invalid_argument, "ECDSA signature too large for curve");
    }
    return raw;
}

namespace {

// The data is already a digest (or an encoded DigestInfo): EVP_PKEY_verify
// without hashing again.
bool verify_prehashed(const ossl::Pkey& key, token::SignMechanism mechanism, std::span<const std::uint8_t> data,
                      std::span<const std::uint8_t> signature) {
    using M = token::SignMechanism;
    std::vector<std::uint8_t> der_sig;
    if (mechanism == M::ecdsa_prehashed) {
        const auto field = static_cast<std::size_t>((EVP_PKEY_get_bits(key.get()) + 7) / 8);
        if (signature.size() != 2 * field) return false;
        der_sig = ecdsa_raw_to_der(signature);
        signature = der_sig;
    }
    ossl::PkeyCtx ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
    if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) fail("verify init");
    const EVP_MD* md = nullptr;
    switch (mechanism) {
        case M::rsa_pkcs1_raw: EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING); break;
        case M::rsa_pss_prehashed_sha256: md = EVP_sha256(); break;
        case M::rsa_pss_prehashed_sha384: md = EVP_sha384(); break;
        case M::rsa_pss_prehashed_sha512: md = EVP_sha512(); break;
        default: break;
    }
    if (md != nullptr) {
        if (data.size() != static_cast<std::size_t>(EVP_MD_get_size(md))) return false;
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_signature_md(ctx.get(), md);
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST);
    }
    const int rc = EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), data.data(), data.size());
    ERR_clear_error();
    return rc == 1;
}

}  // namespace

bool verify_with_public_key(std::span<const std::uint8_t> spki, token::SignMechanism mechanism,
                            std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature) {
    using M = token::SignMechanism;
    ossl::Pkey key = pkey_from_spki(spki);
    const EVP_MD* md = nullptr;
    bool pss = false;
    switch (mechanism) {
        case M::rsa_pkcs1_sha256: md = EVP_sha256(); break;
        case M::rsa_pkcs1_sha384: md = EVP_sha384(); break;
        case M::rsa_pkcs1_sha512: md = EVP_sha512(); break;
        case M::rsa_pss_sha256:
            md = EVP_sha256();
            pss = true;
            break;
        case M::rsa_pss_sha384:
            md = EVP_sha384();
            pss = true;
            break;
        case M::rsa_pss_sha512:
            md = EVP_sha512();
            pss = true;
            break;
        case M::ecdsa_sha256: md = EVP_sha256(); break;
        case M::ecdsa_sha384: md = EVP_sha384(); break;
        case M::eddsa: md = nullptr; break;
        case M::ecdsa_prehashed:
        case M::rsa_pkcs1_raw:
        case M::rsa_pss_prehashed_sha256:
        case M::rsa_pss_prehashed_sha384:
        case M::rsa_pss_prehashed_sha512: return verify_prehashed(key, mechanism, data, signature);
        default: throw Error(ErrorKind::invalid_argument, "HMAC has no public key");
    }
    std::vector<std::uint8_t> der_sig;
    if (mechanism == M::ecdsa_sha256 || mechanism == M::ecdsa_sha384) {
        // Raw r||s has an even length that matches the curve; DER starts with 0x30.
        std::size_t field = static_cast<std::size_t>((EVP_PKEY_get_bits(key.get()) + 7) / 8);
        if (signature.size() == 2 * field) {
            der_sig = ecdsa_raw_to_der(signature);
            signature = der_sig;
        }
    }
    ossl::MdCtx ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    if (EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, key.get()) != 1) fail("verify init");
    if (pss) {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    int rc = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), data.data(), data.size());
    ERR_clear_error();
    return rc == 1;
}

}  // namespace kw::core
