#pragma once
// The token's objects, built from keywardend's key list.
//
// Per managed key: one private key (RSA/EC/Ed25519) or secret key (HMAC)
// object labelled with the key name that always signs with the key's
// current signing version, plus one public key object per version that may
// verify (CKA_ID = the version's kid). Handles are stable for the life of
// the module: the same key (or version) keeps its handle across refreshes.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "client/local/client.hpp"
#include "token/pkcs11.hpp"

namespace kw::pkcs11 {

struct Object {
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    std::string key_name;
    std::string kid;  // public key: its version; private/secret: the signing version when listed
    wire::Family family = wire::Family::hmac;
    bool can_sign = false;
    std::size_t signature_size = 0;  // for the two-call length convention (0: by mechanism)
    std::size_t modulus_bytes = 0;   // RSA
    std::map<CK_ATTRIBUTE_TYPE, std::vector<std::uint8_t>> attributes;
    std::set<CK_ATTRIBUTE_TYPE> sensitive;

    [[nodiscard]] bool matches(std::span<const CK_ATTRIBUTE> templ) const;
};

class ObjectTable {
public:
    /// Replaces the objects with those built from `keys`, keeping handles.
    void refresh(const std::vector<client::KeyInfo>& keys);
    void clear() { objects_.clear(); }
    /// Shared, immutable: a caller keeps its copy across a refresh without copying the attributes.
    [[nodiscard]] std::shared_ptr<const Object> find(CK_OBJECT_HANDLE h) const;
    [[nodiscard]] std::vector<CK_OBJECT_HANDLE> search(std::span<const CK_ATTRIBUTE> templ) const;

private:
    CK_OBJECT_HANDLE handle_for(const std::string& identity);
    std::map<std::string, CK_OBJECT_HANDLE> handles_;  // identity -> handle, never forgotten
    CK_OBJECT_HANDLE next_ = 1;
    std::map<CK_OBJECT_HANDLE, std::shared_ptr<const Object>> objects_;
};

/// Fills one template entry from an object per the C_GetAttributeValue
/// rules; returns CKR_OK, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID
/// or CKR_BUFFER_TOO_SMALL (the entry's length set accordingly).
CK_RV read_attribute(const Object& o, CK_ATTRIBUTE& a);

}  // namespace kw::pkcs11
