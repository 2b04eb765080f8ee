#include "client/pkcs11/mechanisms.hpp"

#include <array>

namespace kw::pkcs11 {
namespace {

using wire::Family;

constexpr CK_FLAGS kSV = CKF_SIGN | CKF_VERIFY;
constexpr CK_FLAGS kEc = kSV | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

// Key sizes as the spec wants them: bits for RSA and EC, bytes for HMAC keys.
// An HMAC key must be at least as long as the hash's output (RFC 2104 section
// 3; SoftHSM refuses shorter ones with CKR_KEY_SIZE_RANGE): keywarden's 32-byte
// HMAC keys serve CKM_SHA256_HMAC only, and C_SignInit says so.
const std::array<MechanismSpec, 16> kMechanisms{{
    {CKM_SHA256_HMAC, Family::hmac, {32, 512, kSV}, nullptr, false},
    {CKM_SHA384_HMAC, Family::hmac, {48, 512, kSV}, nullptr, false},
    {CKM_SHA512_HMAC, Family::hmac, {64, 512, kSV}, nullptr, false},
    {CKM_ECDSA, Family::ec, {256, 384, kEc}, nullptr, true},
    {CKM_ECDSA_SHA256, Family::ec, {256, 384, kEc}, EVP_sha256, false},
    {CKM_ECDSA_SHA384, Family::ec, {256, 384, kEc}, EVP_sha384, false},
    {CKM_ECDSA_SHA512, Family::ec, {256, 384, kEc}, EVP_sha512, false},
    {CKM_RSA_PKCS, Family::rsa, {2048, 4096, kSV}, nullptr, true},
    {CKM_SHA256_RSA_PKCS, Family::rsa, {2048, 4096, kSV}, EVP_sha256, false},
    {CKM_SHA384_RSA_PKCS, Family::rsa, {2048, 4096, kSV}, EVP_sha384, false},
    {CKM_SHA512_RSA_PKCS, Family::rsa, {2048, 4096, kSV}, EVP_sha512, false},
    {CKM_RSA_PKCS_PSS, Family::rsa, {2048, 4096, kSV}, nullptr, true},
    {CKM_SHA256_RSA_PKCS_PSS, Family::rsa, {2048, 4096, kSV}, EVP_sha256, false},
    {CKM_SHA384_RSA_PKCS_PSS, Family::rsa, {2048, 4096, kSV}, EVP_sha384, false},
    {CKM_SHA512_RSA_PKCS_PSS, Family::rsa, {2048, 4096, kSV}, EVP_sha512, false},
    {CKM_EDDSA, Family::ed25519, {255, 255, kSV}, nullptr, false},
}};

// DER DigestInfo headers (RFC 8017 section 9.2, note 1).
constexpr std::array<std::uint8_t, 19> kInfo256{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                                0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
constexpr std::array<std::uint8_t, 19> kInfo384{0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                                0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
constexpr std::array<std::uint8_t, 19> kInfo512{0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                                0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

// The PSS parameter block: a SHA-2 hash, MGF1 with the same hash, salt as
// long as the digest (what the daemon's token is asked for).
CK_RV pss_hash(const CK_MECHANISM& m, const EVP_MD* required, const EVP_MD*& out) {
    if (m.pParameter == nullptr || m.ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS)) {
        return CKR_MECHANISM_PARAM_INVALID;
    }
    const auto* p = static_cast<const CK_RSA_PKCS_PSS_PARAMS*>(m.pParameter);
    const EVP_MD* md = nullptr;
    CK_RSA_PKCS_MGF_TYPE mgf = 0;
    switch (p->hashAlg) {
        case CKM_SHA256:
            md = EVP_sha256();
            mgf = CKG_MGF1_SHA256;
            break;
        case CKM_SHA384:
            md = EVP_sha384();
            mgf = CKG_MGF1_SHA384;
            break;
        case CKM_SHA512:
            md = EVP_sha512();
            mgf = CKG_MGF1_SHA512;
            break;
        default: return CKR_MECHANISM_PARAM_INVALID;
    }
    if (required != nullptr && EVP_MD_get_type(required) != EVP_MD_get_type(md)) return CKR_MECHANISM_PARAM_INVALID;
    if (p->mgf != mgf || p->sLen != static_cast<CK_ULONG>(EVP_MD_get_size(md))) return CKR_MECHANISM_PARAM_INVALID;
    out = md;
    return CKR_OK;
}

}  // namespace

std::span<const MechanismSpec> mechanisms() {
    return kMechanisms;
}

const MechanismSpec* find_mechanism(CK_MECHANISM_TYPE type) {
    for (const auto& m : kMechanisms) {
        if (m.type == type) return &m;
    }
    return nullptr;
}

CK_RV prepare(const CK_MECHANISM& mechanism, Prepared& out) {
    const MechanismSpec* spec = find_mechanism(mechanism.mechanism);
    if (spec == nullptr) return CKR_MECHANISM_INVALID;
    out = Prepared{spec};
    const bool is_pss = mechanism.mechanism == CKM_RSA_PKCS_PSS || mechanism.mechanism == CKM_SHA256_RSA_PKCS_PSS ||
                        mechanism.mechanism == CKM_SHA384_RSA_PKCS_PSS ||
                        mechanism.mechanism == CKM_SHA512_RSA_PKCS_PSS;
    if (is_pss) {
        const EVP_MD* required = spec->hash != nullptr ? spec->hash() : nullptr;
        if (CK_RV rv = pss_hash(mechanism, required, out.pss_hash); rv != CKR_OK) return rv;
        switch (EVP_MD_get_size(out.pss_hash)) {
            case 32: out.wire = wire::Mechanism::rsa_pss_prehashed_sha256; break;
            case 48: out.wire = wire::Mechanism::rsa_pss_prehashed_sha384; break;
            default: out.wire = wire::Mechanism::rsa_pss_prehashed_sha512; break;
        }
        return CKR_OK;
    }
    // Every other mechanism takes no parameter (EdDSA: the plain Ed25519 form only).
    if (mechanism.pParameter != nullptr || mechanism.ulParameterLen != 0) return CKR_MECHANISM_PARAM_INVALID;
    switch (mechanism.mechanism) {
        case CKM_SHA256_HMAC: out.wire = wire::Mechanism::hmac_sha256; break;
        case CKM_SHA384_HMAC: out.wire = wire::Mechanism::hmac_sha384; break;
        case CKM_SHA512_HMAC: out.wire = wire::Mechanism::hmac_sha512; break;
        case CKM_EDDSA: out.wire = wire::Mechanism::eddsa; break;
        default:
            out.wire =
                spec->family == wire::Family::ec ? wire::Mechanism::ecdsa_prehashed : wire::Mechanism::rsa_pkcs1_raw;
    }
    return CKR_OK;
}

CK_RV wire_input(const Prepared& p, std::span<const std::uint8_t> input, bool already_hashed,
                 std::vector<std::uint8_t>& out) {
    out.clear();
    const CK_MECHANISM_TYPE t = p.spec->type;
    if (already_hashed) {
        // Hash-then-sign: `input` is our digest.
        if (t == CKM_SHA256_RSA_PKCS) out.assign(kInfo256.begin(), kInfo256.end());
        if (t == CKM_SHA384_RSA_PKCS) out.assign(kInfo384.begin(), kInfo384.end());
        if (t == CKM_SHA512_RSA_PKCS) out.assign(kInfo512.begin(), kInfo512.end());
        out.insert(out.end(), input.begin(), input.end());
        return CKR_OK;
    }
    if (t == CKM_ECDSA && (input.empty() || input.size() > 64)) return CKR_DATA_LEN_RANGE;
    if (t == CKM_RSA_PKCS_PSS && input.size() != static_cast<std::size_t>(EVP_MD_get_size(p.pss_hash))) {
        return CKR_DATA_LEN_RANGE;
    }
    if (input.size() > wire::kMaxFrame - 4096) return CKR_DATA_LEN_RANGE;
    out.assign(input.begin(), input.end());
    return CKR_OK;
}

}  // namespace kw::pkcs11
