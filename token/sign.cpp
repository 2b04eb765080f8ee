#include "token/sign.hpp"

#include <openssl/evp.h>

#include <array>

#include "token/error.hpp"

namespace kw::token {

std::string_view to_string(SignMechanism m) {
    switch (m) {
        case SignMechanism::hmac_sha256: return "HMAC-SHA256";
        case SignMechanism::hmac_sha384: return "HMAC-SHA384";
        case SignMechanism::hmac_sha512: return "HMAC-SHA512";
        case SignMechanism::rsa_pkcs1_sha256: return "RSA-PKCS1-SHA256";
        case SignMechanism::rsa_pkcs1_sha384: return "RSA-PKCS1-SHA384";
        case SignMechanism::rsa_pkcs1_sha512: return "RSA-PKCS1-SHA512";
        case SignMechanism::rsa_pss_sha256: return "RSA-PSS-SHA256";
        case SignMechanism::rsa_pss_sha384: return "RSA-PSS-SHA384";
        case SignMechanism::rsa_pss_sha512: return "RSA-PSS-SHA512";
        case SignMechanism::ecdsa_sha256: return "ECDSA-SHA256";
        case SignMechanism::ecdsa_sha384: return "ECDSA-SHA384";
        case SignMechanism::eddsa: return "EdDSA";
        case SignMechanism::ecdsa_prehashed: return "ECDSA";
        case SignMechanism::rsa_pkcs1_raw: return "RSA-PKCS1";
        case SignMechanism::rsa_pss_prehashed_sha256: return "RSA-PSS-SHA256-PREHASHED";
        case SignMechanism::rsa_pss_prehashed_sha384: return "RSA-PSS-SHA384-PREHASHED";
        case SignMechanism::rsa_pss_prehashed_sha512: return "RSA-PSS-SHA512-PREHASHED";
    }
    return "unknown";
}

std::size_t prehashed_length(SignMechanism m) {
    switch (m) {
        case SignMechanism::rsa_pss_prehashed_sha256: return 32;
        case SignMechanism::rsa_pss_prehashed_sha384: return 48;
        case SignMechanism::rsa_pss_prehashed_sha512: return 64;
        default: return 0;
    }
}

namespace {

// A mechanism plus its parameter block, kept together so the pointer in
// CK_MECHANISM stays valid for the duration of the call.
struct Prepared {
    CK_MECHANISM mech{};
    CK_RSA_PKCS_PSS_PARAMS pss{};
    std::array<std::uint8_t, EVP_MAX_MD_SIZE> digest{};
    std::span<const std::uint8_t> input;
};

std::span<const std::uint8_t> hash_into(const EVP_MD* md, std::span<const std::uint8_t> data,
                                        std::array<std::uint8_t, EVP_MAX_MD_SIZE>& out) {
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) {
        throw TokenError(TokenErrorKind::bad_argument, "EVP_Digest failed");
    }
    return {out.data(), len};
}

void prepare(Prepared& p, SignMechanism m, std::span<const std::uint8_t> data) {
    p.input = data;
    auto pss = [&](CK_MECHANISM_TYPE mech, CK_MECHANISM_TYPE hash, CK_RSA_PKCS_MGF_TYPE mgf, CK_ULONG salt) {
        p.mech.mechanism = mech;
        p.pss = CK_RSA_PKCS_PSS_PARAMS{hash, mgf, salt};
        p.mech.pParameter = &p.pss;
        p.mech.ulParameterLen = sizeof p.pss;
    };
    switch (m) {
        case SignMechanism::hmac_sha256: p.mech.mechanism = CKM_SHA256_HMAC; break;
        case SignMechanism::hmac_sha384: p.mech.mechanism = CKM_SHA384_HMAC; break;
        case SignMechanism::hmac_sha512: p.mech.mechanism = CKM_SHA512_HMAC; break;
        case SignMechanism::rsa_pkcs1_sha256: p.mech.mechanism = CKM_SHA256_RSA_PKCS; break;
        case SignMechanism::rsa_pkcs1_sha384: p.mech.mechanism = CKM_SHA384_RSA_PKCS; break;
        case SignMechanism::rsa_pkcs1_sha512: p.mech.mechanism = CKM_SHA512_RSA_PKCS; break;
        case SignMechanism::rsa_pss_sha256: pss(CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA256, 32); break;
        case SignMechanism::rsa_pss_sha384: pss(CKM_SHA384_RSA_PKCS_PSS, CKM_SHA384, CKG_MGF1_SHA384, 48); break;
        case SignMechanism::rsa_pss_sha512: pss(CKM_SHA512_RSA_PKCS_PSS, CKM_SHA512, CKG_MGF1_SHA512, 64); break;
        case SignMechanism::ecdsa_sha256:
            p.mech.mechanism = CKM_ECDSA;
            p.input = hash_into(EVP_sha256(), data, p.digest);
            break;
        case SignMechanism::ecdsa_sha384:
            p.mech.mechanism = CKM_ECDSA;
            p.input = hash_into(EVP_sha384(), data, p.digest);
            break;
        case SignMechanism::eddsa: p.mech.mechanism = CKM_EDDSA; break;
        case SignMechanism::ecdsa_prehashed: p.mech.mechanism = CKM_ECDSA; break;
        case SignMechanism::rsa_pkcs1_raw: p.mech.mechanism = CKM_RSA_PKCS; break;
        case SignMechanism::rsa_pss_prehashed_sha256: pss(CKM_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA256, 32); break;
        case SignMechanism::rsa_pss_prehashed_sha384: pss(CKM_RSA_PKCS_PSS, CKM_SHA384, CKG_MGF1_SHA384, 48); break;
        case SignMechanism::rsa_pss_prehashed_sha512: pss(CKM_RSA_PKCS_PSS, CKM_SHA512, CKG_MGF1_SHA512, 64); break;
    }
}

CK_BYTE_PTR bytes(std::span<const std::uint8_t> s) {
    return const_cast<CK_BYTE_PTR>(s.data());
}

}  // namespace

std::vector<std::uint8_t> sign(const Session& s, CK_OBJECT_HANDLE key, SignMechanism m,
                               std::span<const std::uint8_t> data) {
    Prepared p;
    prepare(p, m, data);
    check("C_SignInit", s.fn()->C_SignInit(s.handle(), &p.mech, key));
    // 512 bytes fits every signature we make (RSA-4096); the PKCS#11 length
    // query is only needed if a token surprises us.
    std::vector<std::uint8_t> out(512);
    CK_ULONG len = out.size();
    CK_RV rv = s.fn()->C_Sign(s.handle(), bytes(p.input), p.input.size(), out.data(), &len);
    if (rv == CKR_BUFFER_TOO_SMALL) {  // operation stays active: call again
        out.resize(len);
        rv = s.fn()->C_Sign(s.handle(), bytes(p.input), p.input.size(), out.data(), &len);
    }
    check("C_Sign", rv);
    out.resize(len);
    return out;
}

bool verify(const Session& s, CK_OBJECT_HANDLE key, SignMechanism m, std::span<const std::uint8_t> data,
            std::span<const std::uint8_t> signature) {
    Prepared p;
    prepare(p, m, data);
    check("C_VerifyInit", s.fn()->C_VerifyInit(s.handle(), &p.mech, key));
    CK_RV rv = s.fn()->C_Verify(s.handle(), bytes(p.input), p.input.size(), bytes(signature), signature.size());
    if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE) return false;
    check("C_Verify", rv);
    return true;
}

void generate_random(const Session& s, std::span<std::uint8_t> out) {
    check("C_GenerateRandom", s.fn()->C_GenerateRandom(s.handle(), out.data(), out.size()));
}

}  // namespace kw::token
