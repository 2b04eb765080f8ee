#include "client/pkcs11/objects.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <cstring>
#include <memory>

namespace kw::pkcs11 {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes ulong_bytes(CK_ULONG v) {
    Bytes b(sizeof v);
    std::memcpy(b.data(), &v, sizeof v);
    return b;
}

Bytes bool_bytes(bool v) {
    return {static_cast<std::uint8_t>(v ? CK_TRUE : CK_FALSE)};
}

Bytes text(const std::string& s) {
    return {s.begin(), s.end()};
}

// DER OCTET STRING around `value` (CKA_EC_POINT's encoding).
Bytes octet_string(const Bytes& value) {
    Bytes out{0x04};
    const std::size_t n = value.size();
    if (n < 0x80) {
        out.push_back(static_cast<std::uint8_t>(n));
    } else if (n < 0x100) {
        out.push_back(0x81);
        out.push_back(static_cast<std::uint8_t>(n));
    } else {
        out.push_back(0x82);
        out.push_back(static_cast<std::uint8_t>(n >> 8));
        out.push_back(static_cast<std::uint8_t>(n));
    }
    out.insert(out.end(), value.begin(), value.end());
    return out;
}

struct PkeyFree {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BnFree {
    void operator()(BIGNUM* p) const { BN_free(p); }
};

Bytes bignum_param(EVP_PKEY* key, const char* name) {
    BIGNUM* raw = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) return {};
    std::unique_ptr<BIGNUM, BnFree> bn(raw);
    Bytes out(static_cast<std::size_t>(BN_num_bytes(bn.get())));
    BN_bn2bin(bn.get(), out.data());
    return out;
}

// The public attributes a key's SPKI yields: RSA modulus and exponent, EC
// parameters and point. Fills `o.signature_size` too.
void public_attributes(Object& o, const Bytes& spki) {
    const unsigned char* p = spki.data();
    std::unique_ptr<EVP_PKEY, PkeyFree> key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
    if (!key) return;
    o.attributes[CKA_PUBLIC_KEY_INFO] = spki;
    switch (o.family) {
        case wire::Family::rsa: {
            Bytes n = bignum_param(key.get(), OSSL_PKEY_PARAM_RSA_N);
            o.modulus_bytes = n.size();
            o.signature_size = n.size();
            o.attributes[CKA_MODULUS] = n;
            o.attributes[CKA_PUBLIC_EXPONENT] = bignum_param(key.get(), OSSL_PKEY_PARAM_RSA_E);
            o.attributes[CKA_MODULUS_BITS] = ulong_bytes(static_cast<CK_ULONG>(EVP_PKEY_get_bits(key.get())));
            break;
        }
        case wire::Family::ec: {
            char group[64] = {};
            std::size_t len = 0;
            if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) == 1) {
                const int nid = OBJ_sn2nid(group) != NID_undef ? OBJ_sn2nid(group) : OBJ_txt2nid(group);
                if (ASN1_OBJECT* obj = OBJ_nid2obj(nid); obj != nullptr) {
                    const int der_len = i2d_ASN1_OBJECT(obj, nullptr);
                    Bytes der(static_cast<std::size_t>(std::max(der_len, 0)));
                    unsigned char* out = der.data();
                    i2d_ASN1_OBJECT(obj, &out);
                    o.attributes[CKA_EC_PARAMS] = der;
                }
            }
            Bytes point(256);
            if (EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size(), &len) ==
                1) {
                point.resize(len);
                o.attributes[CKA_EC_POINT] = octet_string(point);
            }
            o.signature_size = 2 * static_cast<std::size_t>((EVP_PKEY_get_bits(key.get()) + 7) / 8);
            break;
        }
        case wire::Family::ed25519: {
            o.attributes[CKA_EC_PARAMS] = Bytes{0x06, 0x03, 0x2b, 0x65, 0x70};  // OID 1.3.101.112 (RFC 8410)
            Bytes raw(32);
            std::size_t len = raw.size();
            if (EVP_PKEY_get_raw_public_key(key.get(), raw.data(), &len) == 1) {
                raw.resize(len);
                o.attributes[CKA_EC_POINT] = octet_string(raw);
            }
            o.signature_size = 64;
            break;
        }
        case wire::Family::hmac: break;
    }
}

CK_KEY_TYPE key_type(wire::Family f) {
    switch (f) {
        case wire::Family::hmac: return CKK_GENERIC_SECRET;
        case wire::Family::rsa: return CKK_RSA;
        case wire::Family::ec: return CKK_EC;
        case wire::Family::ed25519: return CKK_EC_EDWARDS;
    }
    return CKK_GENERIC_SECRET;
}

void common(Object& o, CK_OBJECT_CLASS cls, const client::KeyInfo& k, const std::string& id) {
    o.cls = cls;
    o.key_name = k.name;
    o.family = k.family;
    o.attributes[CKA_CLASS] = ulong_bytes(cls);
    o.attributes[CKA_KEY_TYPE] = ulong_bytes(key_type(k.family));
    o.attributes[CKA_LABEL] = text(k.name);
    o.attributes[CKA_ID] = text(id);
    o.attributes[CKA_TOKEN] = bool_bytes(true);
    o.attributes[CKA_PRIVATE] = bool_bytes(cls != CKO_PUBLIC_KEY);
    o.attributes[CKA_MODIFIABLE] = bool_bytes(false);
    o.attributes[CKA_COPYABLE] = bool_bytes(false);
    o.attributes[CKA_DESTROYABLE] = bool_bytes(false);
    o.attributes[CKA_LOCAL] = bool_bytes(true);
    o.attributes[CKA_DERIVE] = bool_bytes(false);
    o.attributes[CKA_START_DATE] = {};
    o.attributes[CKA_END_DATE] = {};
    o.attributes[CKA_ENCRYPT] = bool_bytes(false);
    o.attributes[CKA_DECRYPT] = bool_bytes(false);
    o.attributes[CKA_WRAP] = bool_bytes(false);
    o.attributes[CKA_UNWRAP] = bool_bytes(false);
    o.attributes[CKA_SIGN_RECOVER] = bool_bytes(false);
    o.attributes[CKA_VERIFY_RECOVER] = bool_bytes(false);
}

}  // namespace

bool Object::matches(std::span<const CK_ATTRIBUTE> templ) const {
    for (const auto& a : templ) {
        auto it = attributes.find(a.type);
        if (it == attributes.end() || sensitive.count(a.type) != 0) return false;
        if (it->second.size() != a.ulValueLen) return false;
        if (a.ulValueLen != 0 && std::memcmp(it->second.data(), a.pValue, a.ulValueLen) != 0) return false;
    }
    return true;
}

CK_OBJECT_HANDLE ObjectTable::handle_for(const std::string& identity) {
    auto [it, inserted] = handles_.try_emplace(identity, next_);
    if (inserted) ++next_;
    return it->second;
}

void ObjectTable::refresh(const std::vector<client::KeyInfo>& keys) {
    std::map<CK_OBJECT_HANDLE, std::shared_ptr<const Object>> fresh;
    for (const auto& k : keys) {
        const bool secret = k.family == wire::Family::hmac;
        Object key_obj;
        key_obj.handle = handle_for((secret ? "secret/" : "private/") + k.name);
        key_obj.kid = k.signing_kid;
        key_obj.can_sign = k.can_sign;
        common(key_obj, secret ? CKO_SECRET_KEY : CKO_PRIVATE_KEY, k, k.signing_kid);
        key_obj.attributes[CKA_SIGN] = bool_bytes(true);
        key_obj.attributes[CKA_VERIFY] = bool_bytes(secret);
        key_obj.attributes[CKA_SENSITIVE] = bool_bytes(true);
        key_obj.attributes[CKA_ALWAYS_SENSITIVE] = bool_bytes(true);
        key_obj.attributes[CKA_EXTRACTABLE] = bool_bytes(false);
        key_obj.attributes[CKA_NEVER_EXTRACTABLE] = bool_bytes(true);
        key_obj.attributes[CKA_ALWAYS_AUTHENTICATE] = bool_bytes(false);
        key_obj.attributes[CKA_WRAP_WITH_TRUSTED] = bool_bytes(false);
        if (secret) {
            key_obj.attributes[CKA_VALUE_LEN] = ulong_bytes(k.secret_bits != 0 ? k.secret_bits / 8 : 32);
            key_obj.attributes[CKA_VALUE] = {};
            key_obj.sensitive = {CKA_VALUE};
        } else {
            for (const auto& v : k.versions) {
                if (v.kid == k.signing_kid) public_attributes(key_obj, v.spki);
            }
            key_obj.attributes.erase(CKA_MODULUS_BITS);  // a public key attribute
            for (CK_ATTRIBUTE_TYPE t : {CKA_VALUE, CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1,
                                        CKA_EXPONENT_2, CKA_COEFFICIENT}) {
                key_obj.attributes[t] = {};
                key_obj.sensitive.insert(t);
            }
        }
        const CK_OBJECT_HANDLE key_handle = key_obj.handle;
        fresh[key_handle] = std::make_shared<const Object>(std::move(key_obj));
        if (secret) continue;
        for (const auto& v : k.versions) {
            if (!v.can_verify) continue;
            Object pub;
            pub.handle = handle_for("public/" + k.name + "/" + v.kid);
            pub.kid = v.kid;
            common(pub, CKO_PUBLIC_KEY, k, v.kid);
            pub.attributes[CKA_VERIFY] = bool_bytes(true);
            pub.attributes[CKA_SIGN] = bool_bytes(false);
            pub.attributes[CKA_TRUSTED] = bool_bytes(false);
            public_attributes(pub, v.spki);
            const CK_OBJECT_HANDLE pub_handle = pub.handle;
            fresh[pub_handle] = std::make_shared<const Object>(std::move(pub));
        }
    }
    objects_ = std::move(fresh);
}

std::shared_ptr<const Object> ObjectTable::find(CK_OBJECT_HANDLE h) const {
    auto it = objects_.find(h);
    return it == objects_.end() ? nullptr : it->second;
}

std::vector<CK_OBJECT_HANDLE> ObjectTable::search(std::span<const CK_ATTRIBUTE> templ) const {
    std::vector<CK_OBJECT_HANDLE> out;
    for (const auto& [h, o] : objects_) {
        if (o->matches(templ)) out.push_back(h);
    }
    return out;
}

CK_RV read_attribute(const Object& o, CK_ATTRIBUTE& a) {
    if (o.sensitive.count(a.type) != 0) {
        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_ATTRIBUTE_SENSITIVE;
    }
    auto it = o.attributes.find(a.type);
    if (it == o.attributes.end()) {
        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    if (a.pValue == nullptr) {
        a.ulValueLen = it->second.size();
        return CKR_OK;
    }
    if (a.ulValueLen < it->second.size()) {
        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (!it->second.empty()) std::memcpy(a.pValue, it->second.data(), it->second.size());
    a.ulValueLen = it->second.size();
    return CKR_OK;
}

}  // namespace kw::pkcs11
