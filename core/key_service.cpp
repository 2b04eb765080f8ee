#include "core/key_service.hpp"

#include <openssl/evp.h>

#include <cctype>
#include <chrono>
#include <cstdio>

#include "core/crypto/public_key.hpp"
#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/lifecycle.hpp"
#include "token/attributes.hpp"
#include "token/error.hpp"
#include "token/keygen.hpp"
#include "token/object.hpp"
#include "token/public_key.hpp"
#include "token/wrap.hpp"

namespace kw::core {
namespace {

token::KeySpec spec_for(const ManagedKey& key) {
    switch (family_of(key)) {
        case Family::hmac: {
            token::KeySpec spec{token::KeyAlgorithm::generic_secret_256, 0};
            if (key.type == KeyType::hmac && key.rsa_bits != 0) spec.secret_bytes = key.rsa_bits / 8;
            return spec;
        }
        case Family::rsa: return {token::KeyAlgorithm::rsa, key.rsa_bits};
        case Family::ecdsa:
            return {key.curve.value_or(Curve::p256) == Curve::p384 ? token::KeyAlgorithm::ec_p384
                                                                   : token::KeyAlgorithm::ec_p256,
                    0};
        case Family::ed25519: return {token::KeyAlgorithm::ed25519, 0};
    }
    return {};
}

token::UnwrapSpec unwrap_spec_for(const ManagedKey& key, const KeyVersion& v) {
    token::UnwrapSpec u;
    u.label = key.name;
    u.id.assign(v.kid.begin(), v.kid.end());
    switch (family_of(key)) {
        case Family::hmac:
            u.key_class = CKO_SECRET_KEY;
            u.key_type = CKK_GENERIC_SECRET;
            break;
        case Family::rsa:
            u.key_class = CKO_PRIVATE_KEY;
            u.key_type = CKK_RSA;
            break;
        case Family::ecdsa:
            u.key_class = CKO_PRIVATE_KEY;
            u.key_type = CKK_EC;
            break;
        case Family::ed25519:
            u.key_class = CKO_PRIVATE_KEY;
            u.key_type = CKK_EC_EDWARDS;
            break;
    }
    return u;
}

void validate(GenerateRequest& r) {
    if (r.name.empty() || r.name.size() > 128)
        throw Error(ErrorKind::invalid_argument, "key name must be 1-128 characters");
    for (char c : r.name) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/' ||
              c == ':')) {
            throw Error(ErrorKind::invalid_argument,
                        "key name '" + r.name + "' may only hold letters, digits and - _ . / :");
        }
    }
    switch (r.type) {
        case KeyType::rsa:
            if (r.rsa_bits != 2048 && r.rsa_bits != 3072 && r.rsa_bits != 4096) {
                throw Error(ErrorKind::invalid_argument, "RSA size must be 2048, 3072 or 4096");
            }
            break;
        case KeyType::hmac:
            if (r.hmac_bits != 256 && r.hmac_bits != 384 && r.hmac_bits != 512) {
                throw Error(ErrorKind::invalid_argument, "HMAC key size must be 256, 384 or 512 bits");
            }
            break;
        case KeyType::ecdsa:
            if (!r.curve) r.curve = Curve::p256;
            break;
        case KeyType::jwt:
            if (!r.jwt_alg) r.jwt_alg = JwtAlg::ES256;
            if (r.jwt_alg == JwtAlg::RS256 || r.jwt_alg == JwtAlg::PS256) {
                if (r.rsa_bits != 3072 && r.rsa_bits != 4096) r.rsa_bits = 2048;
            }
            if (r.jwt_alg == JwtAlg::ES256) r.curve = Curve::p256;
            break;
        case KeyType::api_token:
        case KeyType::provisioning:
            throw Error(ErrorKind::invalid_argument, "api_token and provisioning keys are issued with `token issue`");
        default: break;
    }
    if (r.expires_in && *r.expires_in <= 0) throw Error(ErrorKind::invalid_argument, "expiry must be in the future");
}

}  // namespace

std::string_view to_string(LifecycleOp op) {
    switch (op) {
        case LifecycleOp::suspend: return "suspend";
        case LifecycleOp::resume: return "resume";
        case LifecycleOp::deactivate: return "deactivate";
        case LifecycleOp::compromise: return "compromise";
        case LifecycleOp::destroy: return "destroy";
    }
    return "unknown";
}

KeyService::KeyService(token::Token& token, Store& store, const RootKeys& roots, const Clock& clock, audit::Log& audit,
                       std::string actor, std::size_t handle_cache_capacity)
    : token_(token),
      store_(store),
      roots_(roots),
      clock_(clock),
      audit_(audit),
      actor_(std::move(actor)),
      cache_(handle_cache_capacity) {}

void KeyService::audit(audit::EventType type, const std::string& key, const std::string& kid, const std::string& op,
                       const std::string& outcome, nlohmann::json details) {
    audit_.record(audit::Record{type, actor_, key, kid, op, outcome, std::move(details)});
}

std::vector<std::uint8_t> KeyService::random(std::size_t n) {
    std::vector<std::uint8_t> out(n);
    auto lease = token_.session();
    token::generate_random(lease.session(), out);
    return out;
}

std::string KeyService::new_kid() {
    // 72 random bits, base62: short enough for a JWT header, long enough
    // that two versions never collide in practice (and the store checks).
    return to_base62(random(9), 13);
}

std::string KeyService::new_uuid() {
    auto b = random(16);
    b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
    b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
    std::string h = to_hex(b);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

int rollout_bucket(std::string_view key_id, std::string_view caller) {
    std::string input(key_id);
    input += '\0';
    input += caller;
    std::uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(input.data(), input.size(), md, &len, EVP_sha256(), nullptr);
    const std::uint32_t v =
        (std::uint32_t{md[0]} << 24) | (std::uint32_t{md[1]} << 16) | (std::uint32_t{md[2]} << 8) | md[3];
    return static_cast<int>(v % 100);
}

KeyVersion KeyService::make_version(const ManagedKey& key, int number, Residency residency,
                                    std::optional<std::string> kid) {
    KeyVersion v;
    v.version = number;
    v.kid = kid ? *kid : new_kid();
    v.residency = residency;
    v.created_at = clock_.now();
    v.state_changed_at = v.created_at;
    v.state = VersionState::active;

    token::KeyOptions o;
    o.label = key.name;
    o.id.assign(v.kid.begin(), v.kid.end());
    o.token_object = residency == Residency::token;
    o.extractable = residency == Residency::wrapped;
    o.usage = token::KeyUsage::sign;

    auto lease = token_.session();
    const auto& s = lease.session();
    token::GeneratedKey generated = token::generate_key(s, spec_for(key), o);
    if (generated.public_key.get() != CK_INVALID_HANDLE) {
        v.public_key = spki_from_attributes(token::read_public_key(s, generated.public_key.get()));
    }
    if (residency == Residency::wrapped) {
        v.wrapped_blob = token::wrap_key(s, roots_.wrap, generated.private_key.get());
        // generated.* are extractable session objects: they are destroyed
        // here; signing uses a non-extractable unwrapped copy.
    } else {
        (void)cache_.put(v.kid, generated.private_key.get(), false, token_.generation());
    }
    return v;
}

ManagedKey KeyService::generate(const GenerateRequest& request) {
    GenerateRequest r = request;
    validate(r);
    if (store_.find_key(r.name)) throw Error(ErrorKind::already_exists, "a key named '" + r.name + "' already exists");
    ManagedKey key;
    key.id = new_uuid();
    key.name = r.name;
    key.type = r.type;
    key.rsa_bits = (family_of(ManagedKey{.type = r.type, .jwt_alg = r.jwt_alg}) == Family::rsa) ? r.rsa_bits : 0;
    if (r.type == KeyType::hmac && r.hmac_bits != 256) key.rsa_bits = r.hmac_bits;
    key.curve = r.curve;
    key.jwt_alg = r.jwt_alg;
    key.scopes = r.scopes;
    key.owner = r.owner;
    key.labels = r.labels;
    key.created_at = clock_.now();
    if (r.expires_in) key.expires_at = key.created_at + *r.expires_in;
    KeyVersion v;
    try {
        v = make_version(key, 1, r.residency);
    } catch (const token::Pkcs11Error& e) {
        if (e.rv() != CKR_KEY_NOT_WRAPPABLE || r.residency != Residency::wrapped) throw;
        if (!r.allow_token_fallback) {
            throw Error(ErrorKind::invalid_argument,
                        "this token cannot wrap " + std::string(to_string(key.type)) +
                            " keys (C_WrapKey: CKR_KEY_NOT_WRAPPABLE): use --residency token");
        }
        v = make_version(key, 1, Residency::token);
    }
    v.primary = true;
    key.versions.push_back(std::move(v));
    // Fail closed: the event is durable before the key is recorded. If the
    // store write then fails, a follow-up event says so.
    const auto& v1 = key.versions.front();
    audit(audit::EventType::key_created, key.name, v1.kid, "generate", "ok",
          {{"type", to_string(key.type)}, {"residency", to_string(v1.residency)}, {"scopes", key.scopes}});
    try {
        store_.create_key(key);
    } catch (const std::exception& e) {
        if (v1.residency == Residency::token) destroy_material(key, v1);  // no token object without a record
        audit(audit::EventType::key_created, key.name, v1.kid, "generate", "error", {{"error", e.what()}});
        throw;
    }
    return key;
}

ManagedKey KeyService::describe(std::string_view name) {
    ManagedKey key = get(name);
    audit(audit::EventType::key_retrieved, key.name, "", "describe", "ok");
    return key;
}

ManagedKey KeyService::get(std::string_view name, std::uint64_t* generation) {
    auto key = store_.find_key(name, generation);
    if (!key) throw Error(ErrorKind::not_found, "no key named '" + std::string(name) + "'");
    return std::move(*key);
}

std::vector<ManagedKey> KeyService::list() {
    auto keys = store_.list_keys();
    audit(audit::EventType::key_retrieved, "", "", "list", "ok", {{"count", keys.size()}});
    return keys;
}

std::string KeyService::public_key_pem(std::string_view name, std::optional<std::string_view> kid) {
    ManagedKey key = get(name);
    const KeyVersion* v = kid ? key.version_by_kid(*kid) : key.primary();
    if (v == nullptr) throw Error(ErrorKind::not_found, "key '" + key.name + "' has no such version");
    audit(audit::EventType::key_retrieved, key.name, v->kid, "public_key", "ok");
    if (v->public_key.empty()) {
        throw Error(ErrorKind::invalid_argument, "key '" + key.name + "' is " + std::string(to_string(key.type)) +
                                                     " (symmetric): it has no public key");
    }
    return spki_to_pem(v->public_key);
}

namespace {

bool suits(Family f, token::SignMechanism m) {
    using M = token::SignMechanism;
    switch (m) {
        case M::hmac_sha256:
        case M::hmac_sha384:
        case M::hmac_sha512: return f == Family::hmac;
        case M::rsa_pkcs1_sha256:
        case M::rsa_pkcs1_sha384:
        case M::rsa_pkcs1_sha512:
        case M::rsa_pss_sha256:
        case M::rsa_pss_sha384:
        case M::rsa_pss_sha512:
        case M::rsa_pkcs1_raw:
        case M::rsa_pss_prehashed_sha256:
        case M::rsa_pss_prehashed_sha384:
        case M::rsa_pss_prehashed_sha512: return f == Family::rsa;
        case M::ecdsa_sha256:
        case M::ecdsa_sha384:
        case M::ecdsa_prehashed: return f == Family::ecdsa;
        case M::eddsa: return f == Family::ed25519;
    }
    return false;
}

}  // namespace

token::SignMechanism KeyService::mechanism_for(const ManagedKey& key, const SignOptions& options) {
    using M = token::SignMechanism;
    if (options.mechanism) {
        if (!suits(family_of(key), *options.mechanism)) {
            throw Error(ErrorKind::invalid_argument, std::string(token::to_string(*options.mechanism)) +
                                                         " does not suit " + std::string(to_string(key.type)) +
                                                         " key '" + key.name + "'");
        }
        return *options.mechanism;
    }
    switch (family_of(key)) {
        case Family::hmac: return M::hmac_sha256;
        case Family::rsa:
            if (key.jwt_alg == JwtAlg::PS256) return M::rsa_pss_sha256;
            if (key.jwt_alg == JwtAlg::RS256) return M::rsa_pkcs1_sha256;
            return options.rsa_padding == RsaPadding::pss ? M::rsa_pss_sha256 : M::rsa_pkcs1_sha256;
        case Family::ecdsa: return key.curve == Curve::p384 ? M::ecdsa_sha384 : M::ecdsa_sha256;
        case Family::ed25519: return M::eddsa;
    }
    return M::hmac_sha256;
}

HandleCache::Ref KeyService::working_handle(const token::Session& s, const ManagedKey& key, const KeyVersion& v) {
    const std::uint64_t gen = token_.generation();
    // Objects that left the cache and are no longer in use by any thread.
    for (CK_OBJECT_HANDLE retired : cache_.take_retired(gen)) s.fn()->C_DestroyObject(s.handle(), retired);
    if (auto h = cache_.get(v.kid, gen)) return h;
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    bool owned = false;
    if (v.residency == Residency::wrapped) {
        if (v.wrapped_blob.empty()) {
            throw Error(ErrorKind::not_permitted, "version " + v.kid + " of '" + key.name + "' has no key material");
        }
        token::ObjectHandle obj = token::unwrap_key(s, roots_.wrap, v.wrapped_blob, unwrap_spec_for(key, v));
        handle = obj.release();
        owned = true;
    } else {
        // Token residency: one search by CKA_ID per process, then cached.
        token::Template t;
        t.add_ulong(CKA_CLASS, family_of(key) == Family::hmac ? CKO_SECRET_KEY : CKO_PRIVATE_KEY)
            .add_bytes(CKA_ID, std::vector<std::uint8_t>(v.kid.begin(), v.kid.end()));
        auto found = token::find_objects(s, t.span(), 1);
        if (found.empty()) {
            throw Error(ErrorKind::not_found,
                        "token object for version " + v.kid + " of '" + key.name + "' is missing from the token");
        }
        handle = found.front();
    }
    return cache_.put(v.kid, handle, owned, gen);
}

KeyVersion KeyService::signing_version(const ManagedKey& key, const SignOptions& options) const {
    const UnixTime now = clock_.now();
    const KeyVersion* v = key.primary();
    if (key.rollout_kid && options.caller && rollout_bucket(key.id, *options.caller) < key.rollout_share) {
        if (const KeyVersion* next = key.version_by_kid(*key.rollout_kid); next != nullptr && can_sign(next->state))
            v = next;
    }
    if (key.revoked_at) throw Error(ErrorKind::not_permitted, "key '" + key.name + "' is revoked");
    if (key.expired(now)) {
        throw Error(ErrorKind::not_permitted, "key '" + key.name + "' expired at " + format_time(*key.expires_at));
    }
    if (v == nullptr) throw Error(ErrorKind::not_permitted, "key '" + key.name + "' has no primary version");
    if (!can_sign(v->state)) {
        throw Error(ErrorKind::not_permitted, "key '" + key.name + "' version " + v->kid + " is " +
                                                  std::string(to_string(v->state)) + ": it cannot sign");
    }
    return *v;
}

SignResult KeyService::sign(std::string_view name, std::span<const std::uint8_t> data, const SignOptions& options) {
    std::uint64_t generation = 0;
    ManagedKey key = get(name, &generation);
    KeyVersion chosen;
    try {
        chosen = signing_version(key, options);
    } catch (const Error& e) {
        const KeyVersion* p = key.primary();
        nlohmann::json details{{"reason", e.what()}};
        if (options.credential) details["credential"] = *options.credential;
        audit(audit::EventType::key_used, key.name, p ? p->kid : "", "sign", "denied", std::move(details));
        throw;
    }
    const KeyVersion* v = &chosen;
    SignResult result;
    result.mechanism = mechanism_for(key, options);
    result.kid = v->kid;
    result.version = v->version;
    result.generation = generation;
    // Fail closed: the signature leaves this function only after its event
    // is durable. The commit runs while the token signs (submit, sign,
    // wait), which hides most of its latency behind the HSM call.
    nlohmann::json details{{"mechanism", token::to_string(result.mechanism)}, {"bytes", data.size()}};
    if (options.credential) details["credential"] = *options.credential;
    const auto ticket = audit_.submit(
        audit::Record{audit::EventType::key_used, actor_, key.name, v->kid, "sign", "ok", std::move(details)});
    std::exception_ptr failure;
    std::string why;
    {
        auto lease = token_.session();
        const auto& s = lease.session();
        try {
            const auto start = std::chrono::steady_clock::now();
            const auto h = working_handle(s, key, *v);
            result.signature = token::sign(s, h->handle(), result.mechanism, data);
            result.hsm_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        } catch (const std::exception& e) {
            failure = std::current_exception();
            why = e.what();
        }
    }
    try {
        audit_.wait(ticket);
    } catch (...) {
        token::secure_wipe(result.signature.data(), result.signature.size());
        throw;  // the event is not durable: the signature is withheld
    }
    if (failure) {
        // Audited after the session went back to the pool: the audit leader
        // needs a session of its own for the event's MAC.
        audit(audit::EventType::key_used, key.name, v->kid, "sign", "error", {{"error", why}});
        std::rethrow_exception(failure);
    }
    if ((result.mechanism == token::SignMechanism::ecdsa_sha256 ||
         result.mechanism == token::SignMechanism::ecdsa_sha384) &&
        options.format == SignatureFormat::der) {
        result.signature = ecdsa_raw_to_der(result.signature);
    }
    return result;
}

VerifyResult KeyService::verify(std::string_view name, std::span<const std::uint8_t> data,
                                std::span<const std::uint8_t> signature, const SignOptions& options,
                                std::optional<std::string_view> kid) {
    ManagedKey key = get(name);
    const token::SignMechanism mech = mechanism_for(key, options);
    for (const auto& v : key.versions) {
        if (kid && v.kid != *kid) continue;
        if (!can_verify(v.state)) continue;
        bool ok = false;
        if (family_of(key) == Family::hmac) {
            auto lease = token_.session();
            const auto& s = lease.session();
            ok = token::verify(s, working_handle(s, key, v)->handle(), mech, data, signature);
        } else {
            ok = verify_with_public_key(v.public_key, mech, data, signature);
        }
        if (ok) {
            audit(audit::EventType::key_used, key.name, v.kid, "verify", "valid");
            return {true, v.kid};
        }
    }
    audit(audit::EventType::verify_failed, key.name, kid ? std::string(*kid) : "", "verify", "invalid");
    return {false, {}};
}

void KeyService::revoke(std::string_view name, const std::string& reason) {
    ManagedKey key = get(name);
    if (key.revoked_at) throw Error(ErrorKind::not_permitted, "key '" + key.name + "' is already revoked");
    // Every version that could still be used is retired: active and
    // suspended ones are deactivated (they may still verify what they
    // signed); a pre_active one (a rotation's new version, never used) is
    // destroyed, as SP 800-57 has no pre-activation -> deactivated. Planned
    // and checked before anything changes, so a refusal leaves the key whole.
    std::vector<std::pair<const KeyVersion*, VersionState>> plan;
    for (const auto& v : key.versions) {
        if (v.state == VersionState::active || v.state == VersionState::suspended) {
            plan.emplace_back(&v, VersionState::deactivated);
        } else if (v.state == VersionState::pre_active) {
            plan.emplace_back(&v, VersionState::destroyed);
        }
    }
    for (const auto& [v, to] : plan) {
        if (!transition_allowed(v->state, to)) {
            throw Error(ErrorKind::not_permitted,
                        "version " + v->kid + ": " + transition_refusal(v->state, to) + " (nothing was changed)");
        }
    }
    audit(audit::EventType::key_revoked, key.name, "", "revoke", "ok", {{"reason", reason}});
    const UnixTime now = clock_.now();
    const std::string why = reason.empty() ? "revoked" : reason;
    std::vector<StateChange> done;
    for (const auto& [v, to] : plan) {
        transition(key, *v, to, why, done);
        if (to == VersionState::destroyed) {
            KeyVersion gone = *v;
            gone.state = to;
            destroy_material(key, gone);
        }
    }
    store_.set_revoked(key.id, now);
}

SignResult KeyService::sign_with_version(std::string_view name, std::string_view kid,
                                         std::span<const std::uint8_t> data, const SignOptions& options) {
    ManagedKey key = get(name);
    const KeyVersion* v = key.version_by_kid(kid);
    if (v == nullptr) throw Error(ErrorKind::not_found, "key '" + key.name + "' has no version " + std::string(kid));
    if (v->state == VersionState::compromised || v->state == VersionState::destroyed) {
        throw Error(ErrorKind::not_permitted, "version " + v->kid + " is " + std::string(to_string(v->state)));
    }
    SignResult result;
    result.mechanism = mechanism_for(key, options);
    result.kid = v->kid;
    result.version = v->version;
    audit(audit::EventType::key_used, key.name, v->kid, "check", "ok",
          {{"mechanism", token::to_string(result.mechanism)}});
    auto lease = token_.session();
    const auto& s = lease.session();
    const auto start = std::chrono::steady_clock::now();
    result.signature = token::sign(s, working_handle(s, key, *v)->handle(), result.mechanism, data);
    result.hsm_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if ((result.mechanism == token::SignMechanism::ecdsa_sha256 ||
         result.mechanism == token::SignMechanism::ecdsa_sha384) &&
        options.format == SignatureFormat::der) {
        result.signature = ecdsa_raw_to_der(result.signature);
    }
    return result;
}

StateChange KeyService::transition_version(const ManagedKey& key, std::string_view kid, VersionState to,
                                           const std::string& reason) {
    const KeyVersion* v = key.version_by_kid(kid);
    if (v == nullptr) throw Error(ErrorKind::not_found, "key '" + key.name + "' has no version " + std::string(kid));
    std::vector<StateChange> done;
    transition(key, *v, to, reason, done);
    return done.front();
}

void KeyService::destroy_version_material(const ManagedKey& key, std::string_view kid) {
    const KeyVersion* v = key.version_by_kid(kid);
    if (v == nullptr) throw Error(ErrorKind::not_found, "key '" + key.name + "' has no version " + std::string(kid));
    destroy_material(key, *v);
}

void KeyService::transition(const ManagedKey& key, const KeyVersion& v, VersionState to, const std::string& reason,
                            std::vector<StateChange>& done) {
    if (!transition_allowed(v.state, to)) throw Error(ErrorKind::not_permitted, transition_refusal(v.state, to));
    StateChange change{v.kid, v.state, to, clock_.now(), actor_, reason};
    // Audit first: if the event cannot be written, nothing changes.
    audit(audit::EventType::state_changed, key.name, v.kid, "transition", "ok",
          {{"from", to_string(v.state)}, {"to", to_string(to)}, {"reason", reason}});
    store_.transition(change);
    done.push_back(change);
}

void KeyService::destroy_material(const ManagedKey& key, const KeyVersion& v) {
    auto lease = token_.session();
    const auto& s = lease.session();
    cache_.erase(v.kid);  // its session object is destroyed once no thread uses it
    for (CK_OBJECT_HANDLE retired : cache_.take_retired(token_.generation())) {
        s.fn()->C_DestroyObject(s.handle(), retired);
    }
    if (v.residency == Residency::token) {
        // Private/secret and public objects share CKA_ID = kid.
        token::Template t;
        t.add_bytes(CKA_ID, std::vector<std::uint8_t>(v.kid.begin(), v.kid.end())).add_string(CKA_LABEL, key.name);
        for (CK_OBJECT_HANDLE h : token::find_objects(s, t.span(), 8)) token::destroy_object(s, h);
    }
    store_.clear_key_material(v.kid);
}

std::vector<StateChange> KeyService::apply(std::string_view name, LifecycleOp op, const std::string& reason,
                                           bool force) {
    ManagedKey key = get(name);
    // Plan every version's steps and check them all before changing any: a
    // refusal must leave the key as it was, never half changed.
    struct Step {
        const KeyVersion* version;
        std::vector<VersionState> path;  // states to pass through, in order
    };
    std::vector<Step> plan;
    std::string refusal;
    for (const auto& v : key.versions) {
        const VersionState s = v.state;
        std::vector<VersionState> path;
        switch (op) {
            case LifecycleOp::suspend:
                if (s == VersionState::active) path = {VersionState::suspended};
                break;
            case LifecycleOp::resume:
                if (s == VersionState::suspended) path = {VersionState::active};
                break;
            case LifecycleOp::deactivate:
                if (s == VersionState::active || s == VersionState::suspended || s == VersionState::pre_active) {
                    path = {VersionState::deactivated};
                }
                break;
            case LifecycleOp::compromise:
                if (s != VersionState::compromised && s != VersionState::destroyed) path = {VersionState::compromised};
                break;
            case LifecycleOp::destroy:
                if (s == VersionState::destroyed) break;
                if ((s == VersionState::active || s == VersionState::suspended) && !force) {
                    refusal = "version " + v.kid + " is " + std::string(to_string(s)) +
                              ": deactivate it first or use --force";
                    break;
                }
                if (s == VersionState::active || s == VersionState::suspended) path = {VersionState::deactivated};
                path.push_back(VersionState::destroyed);
                break;
        }
        VersionState from = s;
        for (VersionState to : path) {
            if (!transition_allowed(from, to)) {
                refusal = "version " + v.kid + ": " + transition_refusal(from, to);
                break;
            }
            from = to;
        }
        if (!path.empty()) plan.push_back({&v, std::move(path)});
    }
    if (!refusal.empty()) throw Error(ErrorKind::not_permitted, refusal + " (nothing was changed)");
    std::vector<StateChange> done;
    for (const auto& step : plan) {
        KeyVersion current = *step.version;
        for (VersionState to : step.path) {
            const bool forced = op == LifecycleOp::destroy && to == VersionState::deactivated;
            transition(key, current, to, forced && reason.empty() ? "forced destroy" : reason, done);
            current.state = to;
        }
        if (op == LifecycleOp::destroy) destroy_material(key, current);
    }
    if (done.empty()) {
        throw Error(
            ErrorKind::not_permitted, "no version of '" + key.name + "' can " + std::string(to_string(op)) +
                                          " (states: " +
                                          [&] {
                                              std::string st;
                                              for (const auto& v : key.versions) {
                                                  st += (st.empty() ? "" : ", ") + std::string(to_string(v.state));
                                              }
                                              return st;
                                          }() +
                                          ")");
    }
    return done;
}

}  // namespace kw::core
