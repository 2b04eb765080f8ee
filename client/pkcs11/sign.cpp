// The Sign and Verify families. Policy is the daemon's: C_SignInit asks it
// whether the key may sign now (sign_check), so a suspended, revoked or
// expired key is refused at init; C_Sign asks it to sign (audited there).
#include <cstring>

#include "client/pkcs11/api.hpp"
#include "client/pkcs11/module.hpp"

namespace kw::pkcs11::api {
namespace {

std::size_t signature_size(const Object& o, const Prepared& p) {
    switch (p.spec->type) {
        case CKM_SHA256_HMAC: return 32;
        case CKM_SHA384_HMAC: return 48;
        case CKM_SHA512_HMAC: return 64;
        default: return o.signature_size;
    }
}

// CKA_VALUE_LEN of a secret key (0 when absent).
CK_ULONG hmac_key_bytes(const Object& o) {
    auto it = o.attributes.find(CKA_VALUE_LEN);
    if (it == o.attributes.end() || it->second.size() != sizeof(CK_ULONG)) return 0;
    CK_ULONG n = 0;
    std::memcpy(&n, it->second.data(), sizeof n);
    return n;
}

CK_RV init(Module& m, Operation& op, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key, bool signing) {
    if (op.active) return CKR_OPERATION_ACTIVE;
    if (mechanism == nullptr) return CKR_ARGUMENTS_BAD;
    if (!m.logged_in()) return CKR_USER_NOT_LOGGED_IN;
    const auto o = m.object(key);
    if (!o) return CKR_KEY_HANDLE_INVALID;
    Prepared p;
    if (CK_RV rv = prepare(*mechanism, p); rv != CKR_OK) return rv;
    if (p.spec->family != o->family) return CKR_KEY_TYPE_INCONSISTENT;
    if (p.spec->family == wire::Family::hmac && hmac_key_bytes(*o) < p.spec->info.ulMinKeySize) {
        return CKR_KEY_SIZE_RANGE;  // the token would refuse it at C_Sign, after the audit event
    }
    // Private keys sign, public keys verify, secret (HMAC) keys do both.
    if (signing && o->cls == CKO_PUBLIC_KEY) return CKR_KEY_FUNCTION_NOT_PERMITTED;
    if (!signing && o->cls == CKO_PRIVATE_KEY) return CKR_KEY_FUNCTION_NOT_PERMITTED;
    if (signing) {
        try {
            // A loop that signed with this key a moment ago skips the round
            // trip (LocalClient::recently_checked); the daemon checks C_Sign
            // in full either way.
            if (!m.client().recently_checked(o->key_name, p.wire)) (void)m.client().sign_check(o->key_name, p.wire);
        } catch (const std::exception& e) {
            return rv_of(e);
        }
    }
    op.reset();
    op.mech = p;
    op.key_name = o->key_name;
    op.kid = o->cls == CKO_PUBLIC_KEY ? o->kid : "";
    op.signature_size = signature_size(*o, p);
    op.modulus_bytes = o->modulus_bytes;
    if (p.spec->hash != nullptr) {
        op.md.reset(EVP_MD_CTX_new());
        if (!op.md || EVP_DigestInit_ex(op.md.get(), p.spec->hash(), nullptr) != 1) {
            op.reset();
            return CKR_HOST_MEMORY;
        }
    }
    op.active = true;
    return CKR_OK;
}

CK_RV update(Operation& op, CK_BYTE_PTR part, CK_ULONG len) {
    if (!op.active) return CKR_OPERATION_NOT_INITIALIZED;
    if (part == nullptr && len != 0) {
        op.reset();
        return CKR_ARGUMENTS_BAD;
    }
    if (op.mech.spec->single_part) {
        op.reset();
        return CKR_MECHANISM_INVALID;  // CKM_ECDSA, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS are single-part
    }
    op.multi_part = true;
    if (op.md) {
        if (EVP_DigestUpdate(op.md.get(), part, len) != 1) {
            op.reset();
            return CKR_FUNCTION_FAILED;
        }
        return CKR_OK;
    }
    if (op.buffer.size() + len > wire::kMaxFrame - 4096) {
        op.reset();
        return CKR_DATA_LEN_RANGE;
    }
    op.buffer.insert(op.buffer.end(), part, part + len);
    return CKR_OK;
}

// What goes on the wire for the operation's complete input: `data` for a
// single-part call, else what the updates gathered.
CK_RV complete_input(Operation& op, std::span<const std::uint8_t> data, std::vector<std::uint8_t>& out) {
    if (op.md) {
        std::uint8_t digest[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (!data.empty() && EVP_DigestUpdate(op.md.get(), data.data(), data.size()) != 1) return CKR_FUNCTION_FAILED;
        if (EVP_DigestFinal_ex(op.md.get(), digest, &n) != 1) return CKR_FUNCTION_FAILED;
        return wire_input(op.mech, {digest, n}, true, out);
    }
    if (op.mech.spec->type == CKM_RSA_PKCS && data.size() + 11 > op.modulus_bytes) return CKR_DATA_LEN_RANGE;
    return wire_input(op.mech, op.multi_part ? std::span<const std::uint8_t>(op.buffer) : data, false, out);
}

// Signs and ends the operation, after the length convention: a NULL buffer
// asks for the length, a short one gets CKR_BUFFER_TOO_SMALL; both leave the
// operation active.
CK_RV finish_sign(Module& m, Operation& op, std::span<const std::uint8_t> data, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
    if (sig_len == nullptr) {
        op.reset();
        return CKR_ARGUMENTS_BAD;
    }
    if (sig == nullptr) {
        *sig_len = op.signature_size;
        return CKR_OK;
    }
    if (*sig_len < op.signature_size) {
        *sig_len = op.signature_size;
        return CKR_BUFFER_TOO_SMALL;
    }
    std::vector<std::uint8_t> input;
    CK_RV rv = complete_input(op, data, input);
    if (rv == CKR_OK) {
        try {
            auto s = m.client().sign(op.key_name, op.mech.wire, input);
            if (s.bytes.size() > *sig_len) {
                rv = CKR_FUNCTION_FAILED;
            } else {
                std::memcpy(sig, s.bytes.data(), s.bytes.size());
                *sig_len = s.bytes.size();
            }
        } catch (const std::exception& e) {
            rv = rv_of(e);
        }
    }
    op.reset();
    return rv;
}

CK_RV finish_verify(Module& m, Operation& op, std::span<const std::uint8_t> data, CK_BYTE_PTR sig, CK_ULONG sig_len) {
    CK_RV rv = CKR_OK;
    std::vector<std::uint8_t> input;
    if (sig == nullptr) {
        rv = CKR_ARGUMENTS_BAD;
    } else if (sig_len != op.signature_size) {
        rv = CKR_SIGNATURE_LEN_RANGE;
    } else if (rv = complete_input(op, data, input); rv == CKR_OK) {
        try {
            const bool ok = m.client().verify(op.key_name, op.kid, op.mech.wire, input, {sig, sig_len});
            rv = ok ? CKR_OK : CKR_SIGNATURE_INVALID;
        } catch (const std::exception& e) {
            rv = rv_of(e);
        }
    }
    op.reset();
    return rv;
}

// The common preamble: module, session, its lock.
template <typename F>
CK_RV with_session(CK_SESSION_HANDLE session, F&& f) {
    Module* m = current();
    if (m == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    auto s = m->session(session);
    if (s == nullptr) return CKR_SESSION_HANDLE_INVALID;
    std::lock_guard lock(s->mutex);
    return f(*m, *s);
}

// C_Sign / C_Verify: the operation must be active and single-part so far.
CK_RV check_single_part(Operation& op, CK_BYTE_PTR data, CK_ULONG len) {
    if (!op.active) return CKR_OPERATION_NOT_INITIALIZED;
    if (op.multi_part) return CKR_OPERATION_ACTIVE;  // a multi-part operation ends with C_*Final
    if (data == nullptr && len != 0) {
        op.reset();
        return CKR_ARGUMENTS_BAD;
    }
    return CKR_OK;
}

// C_SignFinal / C_VerifyFinal: the mechanism must allow multi-part use.
CK_RV check_final(Operation& op) {
    if (!op.active) return CKR_OPERATION_NOT_INITIALIZED;
    if (op.mech.spec->single_part) {
        op.reset();
        return CKR_MECHANISM_INVALID;
    }
    op.multi_part = true;
    return CKR_OK;
}

}  // namespace

CK_RV SignInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key) {
    return with_session(session, [&](Module& m, Session& s) { return init(m, s.sign, mechanism, key, true); });
}

CK_RV Sign(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
    return with_session(session, [&](Module& m, Session& s) {
        if (CK_RV rv = check_single_part(s.sign, data, len); rv != CKR_OK) return rv;
        return finish_sign(m, s.sign, {data, len}, sig, sig_len);
    });
}

CK_RV SignUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG len) {
    return with_session(session, [&](Module&, Session& s) { return update(s.sign, part, len); });
}

CK_RV SignFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
    return with_session(session, [&](Module& m, Session& s) {
        if (CK_RV rv = check_final(s.sign); rv != CKR_OK) return rv;
        return finish_sign(m, s.sign, {}, sig, sig_len);
    });
}

CK_RV VerifyInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key) {
    return with_session(session, [&](Module& m, Session& s) { return init(m, s.verify, mechanism, key, false); });
}

CK_RV Verify(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG sig_len) {
    return with_session(session, [&](Module& m, Session& s) {
        if (CK_RV rv = check_single_part(s.verify, data, len); rv != CKR_OK) return rv;
        return finish_verify(m, s.verify, {data, len}, sig, sig_len);
    });
}

CK_RV VerifyUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG len) {
    return with_session(session, [&](Module&, Session& s) { return update(s.verify, part, len); });
}

CK_RV VerifyFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG sig_len) {
    return with_session(session, [&](Module& m, Session& s) {
        if (CK_RV rv = check_final(s.verify); rv != CKR_OK) return rv;
        return finish_verify(m, s.verify, {}, sig, sig_len);
    });
}

}  // namespace kw::pkcs11::api
