#include "token/keygen.hpp"

#include "token/attributes.hpp"
#include "token/error.hpp"

namespace kw::token {

std::string_view to_string(KeyAlgorithm alg) {
    switch (alg) {
        case KeyAlgorithm::generic_secret_256: return "generic-secret-256";
        case KeyAlgorithm::aes_256: return "aes-256";
        case KeyAlgorithm::rsa: return "rsa";
        case KeyAlgorithm::ec_p256: return "ec-p256";
        case KeyAlgorithm::ec_p384: return "ec-p384";
        case KeyAlgorithm::ed25519: return "ed25519";
    }
    return "unknown";
}

bool is_asymmetric(KeyAlgorithm alg) {
    return alg == KeyAlgorithm::rsa || alg == KeyAlgorithm::ec_p256 || alg == KeyAlgorithm::ec_p384 ||
           alg == KeyAlgorithm::ed25519;
}

std::vector<std::uint8_t> ec_params_for(KeyAlgorithm alg) {
    switch (alg) {
        case KeyAlgorithm::ec_p256: return {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
        case KeyAlgorithm::ec_p384: return {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
        case KeyAlgorithm::ed25519: return {0x06, 0x03, 0x2b, 0x65, 0x70};
        default: throw TokenError(TokenErrorKind::bad_argument, "no curve for " + std::string(to_string(alg)));
    }
}

namespace {

// Attributes every private or secret key gets, whatever its algorithm.
void add_private_common(Template& t, const KeyOptions& o) {
    t.add_bool(CKA_TOKEN, o.token_object)
        .add_bool(CKA_PRIVATE, true)
        .add_bool(CKA_SENSITIVE, true)
        .add_bool(CKA_EXTRACTABLE, o.extractable)
        .add_string(CKA_LABEL, o.label);
    if (!o.id.empty()) t.add_bytes(CKA_ID, o.id);
}

void add_public_common(Template& t, const KeyOptions& o) {
    t.add_bool(CKA_TOKEN, o.token_object)
        .add_bool(CKA_PRIVATE, false)
        .add_bool(CKA_VERIFY, true)
        .add_string(CKA_LABEL, o.label);
    if (!o.id.empty()) t.add_bytes(CKA_ID, o.id);
}

GeneratedKey generate_secret(const Session& s, const KeySpec& spec, const KeyOptions& o) {
    Template t;
    CK_MECHANISM mech{};
    const CK_ULONG bytes = spec.algorithm == KeyAlgorithm::aes_256 ? 32 : spec.secret_bytes;
    t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_ulong(CKA_VALUE_LEN, bytes);
    if (spec.algorithm == KeyAlgorithm::aes_256) {
        mech.mechanism = CKM_AES_KEY_GEN;
        t.add_ulong(CKA_KEY_TYPE, CKK_AES);
    } else {
        mech.mechanism = CKM_GENERIC_SECRET_KEY_GEN;
        t.add_ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    }
    const bool wrap = o.usage == KeyUsage::wrap;
    t.add_bool(CKA_SIGN, !wrap).add_bool(CKA_VERIFY, !wrap).add_bool(CKA_WRAP, wrap).add_bool(CKA_UNWRAP, wrap);
    t.add_bool(CKA_ENCRYPT, false).add_bool(CKA_DECRYPT, false);
    add_private_common(t, o);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    check("C_GenerateKey", s.fn()->C_GenerateKey(s.handle(), &mech, t.data(), t.size(), &h));
    GeneratedKey out;
    out.private_key = ObjectHandle(s, h);
    if (o.token_object) out.private_key.disown();
    return out;
}

GeneratedKey generate_pair(const Session& s, const KeySpec& spec, const KeyOptions& o) {
    Template pub;
    Template priv;
    CK_MECHANISM mech{};
    add_public_common(pub, o);
    add_private_common(priv, o);
    priv.add_bool(CKA_SIGN, true);
    switch (spec.algorithm) {
        case KeyAlgorithm::rsa: {
            if (spec.rsa_bits != 2048 && spec.rsa_bits != 3072 && spec.rsa_bits != 4096) {
                throw TokenError(TokenErrorKind::bad_argument,
                                 "RSA size must be 2048, 3072 or 4096, not " + std::to_string(spec.rsa_bits));
            }
            mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
            pub.add_ulong(CKA_MODULUS_BITS, spec.rsa_bits).add_bytes(CKA_PUBLIC_EXPONENT, {0x01, 0x00, 0x01});
            pub.add_ulong(CKA_KEY_TYPE, CKK_RSA);
            priv.add_ulong(CKA_KEY_TYPE, CKK_RSA);
            break;
        }
        case KeyAlgorithm::ec_p256:
        case KeyAlgorithm::ec_p384:
            mech.mechanism = CKM_EC_KEY_PAIR_GEN;
            pub.add_bytes(CKA_EC_PARAMS, ec_params_for(spec.algorithm)).add_ulong(CKA_KEY_TYPE, CKK_EC);
            priv.add_ulong(CKA_KEY_TYPE, CKK_EC);
            break;
        case KeyAlgorithm::ed25519:
            mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
            pub.add_bytes(CKA_EC_PARAMS, ec_params_for(spec.algorithm)).add_ulong(CKA_KEY_TYPE, CKK_EC_EDWARDS);
            priv.add_ulong(CKA_KEY_TYPE, CKK_EC_EDWARDS);
            break;
        default: throw TokenError(TokenErrorKind::bad_argument, "not a key pair algorithm");
    }
    CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE hpriv = CK_INVALID_HANDLE;
    check("C_GenerateKeyPair", s.fn()->C_GenerateKeyPair(s.handle(), &mech, pub.data(), pub.size(), priv.data(),
                                                         priv.size(), &hpub, &hpriv));
    GeneratedKey out;
    out.public_key = ObjectHandle(s, hpub);
    out.private_key = ObjectHandle(s, hpriv);
    if (o.token_object) {
        out.public_key.disown();
        out.private_key.disown();
    }
    return out;
}

}  // namespace

GeneratedKey generate_key(const Session& session, const KeySpec& spec, const KeyOptions& options) {
    if (options.usage == KeyUsage::wrap && spec.algorithm != KeyAlgorithm::aes_256) {
        throw TokenError(TokenErrorKind::bad_argument, "only AES keys wrap");
    }
    return is_asymmetric(spec.algorithm) ? generate_pair(session, spec, options)
                                         : generate_secret(session, spec, options);
}

}  // namespace kw::token
