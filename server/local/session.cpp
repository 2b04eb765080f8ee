#include "server/local/session.hpp"

#include <chrono>

#include "core/error.hpp"
#include "core/wire/protocol.hpp"
#include "token/error.hpp"

namespace kw::server::local {
namespace {

using wire::Status;

// A refusal with its status; handle() turns it into the answer.
struct Refusal {
    Status status;
    std::string message;
};

std::int64_t monotonic_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

wire::Family family(const core::ManagedKey& key) {
    switch (core::family_of(key)) {
        case core::Family::hmac: return wire::Family::hmac;
        case core::Family::rsa: return wire::Family::rsa;
        case core::Family::ecdsa: return wire::Family::ec;
        case core::Family::ed25519: return wire::Family::ed25519;
    }
    return wire::Family::hmac;
}

bool is_token_key(const core::ManagedKey& key) {
    return key.type == core::KeyType::api_token || key.type == core::KeyType::provisioning;
}

token::SignMechanism mechanism_of(std::uint8_t m) {
    using T = token::SignMechanism;
    switch (static_cast<wire::Mechanism>(m)) {
        case wire::Mechanism::hmac_sha256: return T::hmac_sha256;
        case wire::Mechanism::hmac_sha384: return T::hmac_sha384;
        case wire::Mechanism::hmac_sha512: return T::hmac_sha512;
        case wire::Mechanism::ecdsa_prehashed: return T::ecdsa_prehashed;
        case wire::Mechanism::rsa_pkcs1_raw: return T::rsa_pkcs1_raw;
        case wire::Mechanism::rsa_pss_prehashed_sha256: return T::rsa_pss_prehashed_sha256;
        case wire::Mechanism::rsa_pss_prehashed_sha384: return T::rsa_pss_prehashed_sha384;
        case wire::Mechanism::rsa_pss_prehashed_sha512: return T::rsa_pss_prehashed_sha512;
        case wire::Mechanism::eddsa: return T::eddsa;
    }
    throw Refusal{Status::mechanism_invalid, "unknown mechanism " + std::to_string(m)};
}

// Maps what the services throw onto statuses. `key` (when known) tells an
// expired key from otherwise unusable ones.
Refusal refusal_of(App& app, const std::exception& e, const core::ManagedKey* key) {
    const core::Clock& clock = app.keys.clock();
    if (const auto* err = dynamic_cast<const core::Error*>(&e)) {
        switch (err->kind()) {
            case core::ErrorKind::not_found: return {Status::unknown_key, err->what()};
            case core::ErrorKind::not_permitted:
                if (key != nullptr && key->expired(clock.now())) return {Status::key_expired, err->what()};
                return {Status::key_not_usable, err->what()};
            case core::ErrorKind::invalid_argument: return {Status::mechanism_invalid, err->what()};
            case core::ErrorKind::audit_failure:
                note_audit_failure(app, err->what());
                return {Status::audit_failure, err->what()};
            case core::ErrorKind::store_locked:
            case core::ErrorKind::store_failure: return {Status::unavailable, err->what()};
            default: return {Status::internal, err->what()};
        }
    }
    if (const auto* p11 = dynamic_cast<const token::Pkcs11Error*>(&e)) {
        switch (p11->rv()) {
            case CKR_DATA_LEN_RANGE:
            case CKR_DATA_INVALID: return {Status::data_invalid, p11->what()};
            case CKR_DEVICE_REMOVED:
            case CKR_TOKEN_NOT_PRESENT:
            case CKR_DEVICE_ERROR: return {Status::unavailable, p11->what()};
            default: return {Status::internal, p11->what()};
        }
    }
    if (dynamic_cast<const wire::WireError*>(&e) != nullptr) return {Status::bad_request, e.what()};
    return {Status::internal, e.what()};
}

}  // namespace

std::vector<std::uint8_t> Session::handle(std::span<const std::uint8_t> request) {
    wire::Writer out;
    out.u16(static_cast<std::uint16_t>(Status::ok));
    try {
        if (app_.draining) throw Refusal{Status::unavailable, "keywardend is shutting down"};
        wire::Reader in(request);
        const auto op = static_cast<wire::Op>(in.u8());
        if (op != wire::Op::hello && op != wire::Op::ping) require_credential();
        switch (op) {
            case wire::Op::hello: hello(in, out); break;
            case wire::Op::list_keys: list_keys(out); break;
            case wire::Op::sign_check: sign_check(in, out); break;
            case wire::Op::sign: sign(in, out); break;
            case wire::Op::verify: verify(in, out); break;
            case wire::Op::random: random(in, out); break;
            case wire::Op::ping: break;
            default: throw Refusal{Status::bad_request, "unknown operation"};
        }
        in.finish();
        return std::move(out.buffer());
    } catch (const Refusal& r) {
        wire::Writer err;
        err.u16(static_cast<std::uint16_t>(r.status)).str(r.message);
        return std::move(err.buffer());
    } catch (const std::exception& e) {
        const Refusal r = refusal_of(app_, e, nullptr);
        wire::Writer err;
        err.u16(static_cast<std::uint16_t>(r.status)).str(r.message);
        return std::move(err.buffer());
    }
}

void Session::hello(wire::Reader& in, wire::Writer& out) {
    const std::uint16_t version = in.u16();
    const auto credential = in.bytes();
    const std::string client = in.str();
    if (version != wire::kProtocolVersion) {
        throw Refusal{Status::version_mismatch, "keywardend speaks protocol version " +
                                                    std::to_string(wire::kProtocolVersion) + ", not " +
                                                    std::to_string(version)};
    }
    authenticated_ = false;
    bool limited = false;
    auto gate = [&](const core::tokens::Verification& v) {
        limited = !app_.token_limits.take(v.kid).allowed;
        return !limited;
    };
    const std::string_view text(reinterpret_cast<const char*>(credential.data()), credential.size());
    auto v = app_.tokens.verify(text, std::nullopt, gate);
    note_verification(app_, v);
    using C = core::tokens::VerifyCode;
    switch (v.code) {
        case C::VALID: break;
        case C::EXPIRED: throw Refusal{Status::auth_expired, "the credential has expired"};
        case C::RATE_LIMITED:
            app_.metrics.inc("keywarden_rate_limit_denials_total", {{"scope", "token"}});
            audit_rate_limited(app_, v.name, v.kid, "local_hello", {{"client", client}});
            throw Refusal{Status::rate_limited, "the credential is over its rate limit"};
        default:
            throw Refusal{Status::auth_failed, "credential refused: " + std::string(core::tokens::to_string(v.code))};
    }
    credential_ = v;
    const bool may_sign = std::any_of(v.scopes.begin(), v.scopes.end(), [](const std::string& s) {
        return s == "pkcs11" || s == "admin" || s.rfind("sign:", 0) == 0;
    });
    if (!may_sign) {
        app_.keys.audit(core::audit::EventType::verify_failed, v.name, v.kid, "local_hello", "INSUFFICIENT_SCOPE",
                        {{"client", client}});
        throw Refusal{Status::forbidden, "the credential needs scope 'pkcs11' or 'sign:<key glob>'"};
    }
    authenticated_ = true;
    checked_at_ms_ = monotonic_ms();
    out.str(v.name).str(v.kid).u64(v.expires_at ? static_cast<std::uint64_t>(*v.expires_at) : 0);
}

void Session::require_credential() {
    if (!authenticated_) throw Refusal{Status::not_authenticated, "send hello with a credential first"};
    const std::int64_t now_ms = monotonic_ms();
    if (now_ms - checked_at_ms_ < 1000) return;
    // The credential may have been revoked, suspended or expired since hello.
    const core::ManagedKey key = app_.keys.get(credential_.name);
    const core::KeyVersion* v = key.version_by_kid(credential_.kid);
    const auto now = app_.keys.clock().now();
    if (key.expired(now)) {
        authenticated_ = false;
        throw Refusal{Status::auth_expired, "the credential has expired"};
    }
    if (key.revoked_at || v == nullptr || v->state != core::VersionState::active) {
        authenticated_ = false;
        throw Refusal{Status::auth_failed, "the credential is no longer active"};
    }
    checked_at_ms_ = now_ms;
}

bool Session::may_use(const std::string& key_name) const {
    for (const auto& s : credential_.scopes) {
        if (s == "pkcs11") return true;
    }
    return core::tokens::scope_allows(credential_.scopes, "sign:" + key_name);
}

void Session::require_use(const std::string& key_name) const {
    if (!may_use(key_name)) {
        throw Refusal{Status::forbidden, "the credential may not use key '" + key_name + "'"};
    }
}

void Session::take_rate(const std::string& key_name) {
    // Denials are audited sampled (server/rate_limited.cpp); metrics count each.
    if (!app_.token_limits.take(credential_.kid).allowed) {
        app_.metrics.inc("keywarden_rate_limit_denials_total", {{"scope", "token"}});
        audit_rate_limited(app_, key_name, "", "local_sign", {{"credential", credential_.kid}, {"limit", "token"}});
        throw Refusal{Status::rate_limited, "the credential is over its rate limit"};
    }
    if (!app_.key_limits.take(key_name).allowed) {
        app_.metrics.inc("keywarden_rate_limit_denials_total", {{"scope", "key"}});
        audit_rate_limited(app_, key_name, "", "local_sign", {{"credential", credential_.kid}, {"limit", "key"}});
        throw Refusal{Status::rate_limited, "key '" + key_name + "' is over its rate limit"};
    }
}

void Session::list_keys(wire::Writer& out) {
    std::vector<core::ManagedKey> visible;
    for (auto& key : app_.keys.list()) {
        if (!is_token_key(key) && may_use(key.name)) visible.push_back(std::move(key));
    }
    out.u32(static_cast<std::uint32_t>(visible.size()));
    core::SignOptions options;
    options.caller = credential_.kid;
    for (const auto& key : visible) {
        std::string signing_kid;
        bool can_sign = true;
        try {
            signing_kid = app_.keys.signing_version(key, options).kid;
        } catch (const core::Error&) {
            can_sign = false;
            if (const auto* p = key.primary()) signing_kid = p->kid;
        }
        out.str(key.name).str(core::to_string(key.type)).u8(static_cast<std::uint8_t>(family(key)));
        // HMAC: the secret's size (PKCS#11 CKA_VALUE_LEN); asymmetric keys carry theirs in the SPKI.
        out.u32(core::family_of(key) == core::Family::hmac ? (key.rsa_bits != 0 ? key.rsa_bits : 256) : 0);
        out.u8(can_sign ? 1 : 0).str(signing_kid);
        std::uint32_t n = 0;
        for (const auto& v : key.versions) n += core::can_verify(v.state) ? 1 : 0;
        out.u32(n);
        for (const auto& v : key.versions) {
            if (!core::can_verify(v.state)) continue;
            out.str(v.kid).u8(1).bytes(v.public_key);
        }
    }
}

void Session::sign_check(wire::Reader& in, wire::Writer& out) {
    const std::string name = in.str();
    const auto mech = mechanism_of(in.u8());
    require_use(name);
    // Read with the key, before the checks: a change after that shows the
    // client a newer generation than the one its answer was checked at.
    std::uint64_t generation = 0;
    core::ManagedKey key;
    try {
        key = app_.keys.get(name, &generation);
        core::SignOptions options;
        options.caller = credential_.kid;
        options.mechanism = mech;
        (void)core::KeyService::mechanism_for(key, options);
        out.str(app_.keys.signing_version(key, options).kid).u64(generation);
    } catch (const core::Error& e) {
        throw refusal_of(app_, e, key.name.empty() ? nullptr : &key);
    }
}

void Session::sign(wire::Reader& in, wire::Writer& out) {
    const std::string name = in.str();
    const auto mech = mechanism_of(in.u8());
    const auto data = in.bytes();
    require_use(name);
    if (const std::size_t want = token::prehashed_length(mech); want != 0 && data.size() != want) {
        throw Refusal{Status::data_invalid, "the digest must be " + std::to_string(want) + " bytes"};
    }
    take_rate(name);
    core::SignOptions options;
    options.caller = credential_.kid;
    options.credential = credential_.kid;
    options.mechanism = mech;
    options.format = core::SignatureFormat::raw;
    try {
        auto result = app_.keys.sign(name, data, options);
        static const std::string kMetric = "keywarden_hsm_operation_seconds";  // built once: this is the hot path
        static const core::metrics::Labels kLabels{{"op", "local_sign"}};
        app_.metrics.observe(kMetric, kLabels, result.hsm_seconds);
        out.str(result.kid).bytes(result.signature).u64(result.generation);
    } catch (const std::exception& e) {
        if (const auto* p11 = dynamic_cast<const token::Pkcs11Error*>(&e)) {
            app_.metrics.inc("keywarden_hsm_errors_total", {{"rv", std::string(p11->name())}});
        }
        std::optional<core::ManagedKey> key;
        try {
            key = app_.keys.get(name);
        } catch (const std::exception&) {
        }
        throw refusal_of(app_, e, key ? &*key : nullptr);
    }
}

void Session::verify(wire::Reader& in, wire::Writer& out) {
    const std::string name = in.str();
    const std::string kid = in.str();
    const auto mech = mechanism_of(in.u8());
    const auto data = in.bytes();
    const auto signature = in.bytes();
    require_use(name);
    core::SignOptions options;
    options.mechanism = mech;
    try {
        auto result = app_.keys.verify(name, data, signature, options,
                                       kid.empty() ? std::nullopt : std::optional<std::string_view>(kid));
        out.u8(result.valid ? 1 : 0).str(result.kid);
    } catch (const std::exception& e) {
        throw refusal_of(app_, e, nullptr);
    }
}

void Session::random(wire::Reader& in, wire::Writer& out) {
    const std::uint32_t n = in.u32();
    if (n > 1024) throw Refusal{Status::data_invalid, "at most 1024 random bytes per request"};
    out.bytes(app_.keys.random(n));
}

}  // namespace kw::server::local
