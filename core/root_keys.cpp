#include "core/root_keys.hpp"

#include "core/error.hpp"
#include "token/attributes.hpp"
#include "token/keygen.hpp"
#include "token/object.hpp"

namespace kw::core {
namespace {

std::vector<CK_OBJECT_HANDLE> find_by_label(const token::Session& s, CK_OBJECT_CLASS cls, const std::string& label) {
    token::Template t;
    t.add_ulong(CKA_CLASS, cls).add_string(CKA_LABEL, label).add_bool(CKA_TOKEN, true);
    return token::find_objects(s, t.span());
}

CK_OBJECT_HANDLE find_one(const token::Session& s, CK_OBJECT_CLASS cls, const std::string& label) {
    auto found = find_by_label(s, cls, label);
    return found.empty() ? CK_INVALID_HANDLE : found.front();
}

void create(const token::Session& s, token::KeyAlgorithm alg, token::KeyUsage usage, const std::string& label) {
    token::KeyOptions o;
    o.label = label;
    o.token_object = true;
    o.extractable = false;
    o.usage = usage;
    (void)token::generate_key(s, token::KeySpec{alg, 0}, o);
}

}  // namespace

std::vector<std::string> init_root_keys(token::Token& token) {
    auto lease = token.session();
    const auto& s = lease.session();
    std::vector<std::string> created;
    auto ensure = [&](CK_OBJECT_CLASS cls, token::KeyAlgorithm alg, token::KeyUsage usage, const std::string& label) {
        if (find_one(s, cls, label) != CK_INVALID_HANDLE) return;
        create(s, alg, usage, label);
        created.push_back(label);
    };
    ensure(CKO_SECRET_KEY, token::KeyAlgorithm::aes_256, token::KeyUsage::wrap, kRootWrapLabel);
    ensure(CKO_SECRET_KEY, token::KeyAlgorithm::generic_secret_256, token::KeyUsage::sign,
           std::string(kPepperLabelPrefix) + "1");
    ensure(CKO_SECRET_KEY, token::KeyAlgorithm::generic_secret_256, token::KeyUsage::sign, kAuditMacLabel);
    ensure(CKO_PRIVATE_KEY, token::KeyAlgorithm::ec_p256, token::KeyUsage::sign, kAuditSignLabel);
    return created;
}

int add_pepper(token::Token& token, const RootKeys& current) {
    int next = current.current_pepper() + 1;
    auto lease = token.session();
    create(lease.session(), token::KeyAlgorithm::generic_secret_256, token::KeyUsage::sign,
           std::string(kPepperLabelPrefix) + std::to_string(next));
    return next;
}

RootKeys load_root_keys(token::Token& token) {
    auto lease = token.session();
    const auto& s = lease.session();
    RootKeys keys;
    keys.wrap = find_one(s, CKO_SECRET_KEY, kRootWrapLabel);
    keys.audit_mac = find_one(s, CKO_SECRET_KEY, kAuditMacLabel);
    keys.audit_sign = find_one(s, CKO_PRIVATE_KEY, kAuditSignLabel);
    keys.audit_verify = find_one(s, CKO_PUBLIC_KEY, kAuditSignLabel);
    for (int v = 1;; ++v) {
        CK_OBJECT_HANDLE h = find_one(s, CKO_SECRET_KEY, std::string(kPepperLabelPrefix) + std::to_string(v));
        if (h == CK_INVALID_HANDLE) break;
        keys.peppers[v] = h;
    }
    if (keys.wrap == CK_INVALID_HANDLE || keys.audit_mac == CK_INVALID_HANDLE || keys.audit_sign == CK_INVALID_HANDLE ||
        keys.audit_verify == CK_INVALID_HANDLE || keys.peppers.empty()) {
        throw Error(ErrorKind::not_initialized,
                    "token '" + token.info().label + "' has no keywarden root keys: run `hsm-keytool init`");
    }
    return keys;
}

}  // namespace kw::core
