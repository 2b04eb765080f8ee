#pragma once
// Managed keys end to end: generate in the token, record in the store, sign
// and verify by name, export public keys, revoke.
//
// Thread-safe: the store and the handle cache lock internally, token work
// goes through the session pool. Policy (state, expiry, revocation) is checked
// here, at use time, on every call.
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/audit/log.hpp"
#include "core/clock.hpp"
#include "core/handle_cache.hpp"
#include "core/key.hpp"
#include "core/root_keys.hpp"
#include "core/store/store.hpp"
#include "token/sign.hpp"
#include "token/token.hpp"

namespace kw::core {

struct GenerateRequest {
    std::string name;
    KeyType type = KeyType::hmac;
    unsigned rsa_bits = 2048;
    // Secret size of a plain HMAC key: 256, 384 or 512 bits. SoftHSM refuses
    // HMAC-SHA384/512 with a key shorter than the hash output.
    unsigned hmac_bits = 256;
    std::optional<Curve> curve;
    std::optional<JwtAlg> jwt_alg;
    std::vector<std::string> scopes;
    std::string owner;
    std::map<std::string, std::string> labels;
    std::optional<std::int64_t> expires_in;  // seconds from now
    Residency residency = Residency::wrapped;
    // When the token cannot wrap this algorithm (SoftHSM 2.6 cannot wrap
    // Ed25519 private keys: CKR_KEY_NOT_WRAPPABLE), fall back to token
    // residency instead of failing. Off when the caller asked explicitly.
    bool allow_token_fallback = true;
};

struct SignOptions {
    RsaPadding rsa_padding = RsaPadding::pkcs1;
    // ECDSA output; DER by default (X.509, `openssl dgst -verify`), raw for JOSE.
    SignatureFormat format = SignatureFormat::der;
    // Who is asking (API token id, service name). During a GRADUAL rotation
    // it picks the signing version by a stable hash, so a caller never flips
    // between versions. Without it the primary signs.
    std::optional<std::string> caller;
    // A specific mechanism instead of the key's default (the PKCS#11 face
    // chooses per call). Must suit the key's family, else invalid_argument.
    std::optional<token::SignMechanism> mechanism;
    // The credential (API token kid) acting, recorded in the key_used event.
    std::optional<std::string> credential;
};

/// 0..99: the caller's stable rollout bucket for a key.
[[nodiscard]] int rollout_bucket(std::string_view key_id, std::string_view caller);

struct SignResult {
    std::vector<std::uint8_t> signature;
    std::string kid;
    int version = 0;
    token::SignMechanism mechanism = token::SignMechanism::hmac_sha256;
    std::uint64_t generation = 0;  // the store's keys generation the key was read at
    // Time spent in the token for this signature (the key's working handle,
    // unwrapping it if it was not cached, and the signature itself); the
    // store lookup and the audit event are not in it.
    double hsm_seconds = 0;
};

/// Key-level lifecycle operations (applied to the key's versions).
enum class LifecycleOp {
    suspend,     // active -> suspended (reversible; verify only)
    resume,      // suspended -> active
    deactivate,  // active/suspended/pre_active -> deactivated (verify only)
    compromise,  // anything not destroyed -> compromised (nothing, ever)
    destroy,     // deactivated/compromised -> destroyed: key material gone, record kept
};
[[nodiscard]] std::string_view to_string(LifecycleOp op);

struct VerifyResult {
    bool valid = false;
    std::string kid;  // the version that verified, if any
};

class KeyService {
public:
    /// `actor` names who acts in audit events ("cli:alice"). Every operation
    /// is audited through `audit`; if the event cannot be written the
    /// operation fails (fail closed).
    KeyService(token::Token& token, Store& store, const RootKeys& roots, const Clock& clock, audit::Log& audit,
               std::string actor, std::size_t handle_cache_capacity = 16384);

    /// Generates version 1 in the token and records the key. Throws
    /// Error(already_exists / invalid_argument) or token errors.
    ManagedKey generate(const GenerateRequest& request);

    /// Throws Error(not_found); not audited (internal). `generation`: as Store::find_key.
    [[nodiscard]] ManagedKey get(std::string_view name, std::uint64_t* generation = nullptr);
    /// get() for an outside reader: audited as key_retrieved.
    [[nodiscard]] ManagedKey describe(std::string_view name);
    [[nodiscard]] std::vector<ManagedKey> list();

    /// PEM SubjectPublicKeyInfo of the primary (or the given) version.
    [[nodiscard]] std::string public_key_pem(std::string_view name, std::optional<std::string_view> kid = {});

    /// The version sign() would use now for `options.caller`. Throws
    /// Error(not_found) or Error(not_permitted) (revoked, expired, no usable
    /// primary) without signing or auditing: a cheap pre-check for callers
    /// that must refuse early (PKCS#11 C_SignInit).
    [[nodiscard]] KeyVersion signing_version(const ManagedKey& key, const SignOptions& options = {}) const;

    /// Signs with the primary version. Throws Error(not_permitted) if the key
    /// is revoked, expired or its primary version cannot sign.
    SignResult sign(std::string_view name, std::span<const std::uint8_t> data, const SignOptions& options = {});

    /// Checks with the given version, or every version allowed to verify.
    VerifyResult verify(std::string_view name, std::span<const std::uint8_t> data,
                        std::span<const std::uint8_t> signature, const SignOptions& options = {},
                        std::optional<std::string_view> kid = {});

    /// Revokes the key: no version signs again; versions become deactivated (verify only).
    void revoke(std::string_view name, const std::string& reason = "");

    /// Applies a lifecycle operation to every version it applies to. destroy
    /// refuses versions that are not yet deactivated or compromised unless
    /// `force` (then they are deactivated first, both steps recorded).
    /// Returns the versions changed. Throws Error(not_permitted) when no
    /// version can make the transition.
    std::vector<StateChange> apply(std::string_view name, LifecycleOp op, const std::string& reason = "",
                                   bool force = false);

    /// Writes an audit event (used by the services built on this one).
    void audit(audit::EventType type, const std::string& key, const std::string& kid, const std::string& op,
               const std::string& outcome, nlohmann::json details = nlohmann::json::object());
    [[nodiscard]] audit::Log& audit_log() noexcept { return audit_; }
    [[nodiscard]] const RootKeys& roots() const noexcept { return roots_; }
    [[nodiscard]] const std::string& actor() const noexcept { return actor_; }

    /// The mechanism a key signs with.
    [[nodiscard]] static token::SignMechanism mechanism_for(const ManagedKey& key, const SignOptions& options);

    [[nodiscard]] std::size_t cached_handles() const { return cache_.size(); }
    [[nodiscard]] token::Token& token() noexcept { return token_; }
    [[nodiscard]] Store& store() noexcept { return store_; }
    [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

    /// Fresh random bytes from the token.
    [[nodiscard]] std::vector<std::uint8_t> random(std::size_t n);
    [[nodiscard]] std::string new_kid();
    [[nodiscard]] std::string new_uuid();

    /// Generates a new key version's material (no store write): used by
    /// generate() and by rotation (which chooses and records the kid first).
    KeyVersion make_version(const ManagedKey& key, int number, Residency residency,
                            std::optional<std::string> kid = {});

    /// Signs with one particular version (rotation checks, audited as "check").
    SignResult sign_with_version(std::string_view name, std::string_view kid, std::span<const std::uint8_t> data,
                                 const SignOptions& options = {});

    /// One audited lifecycle transition of one version.
    StateChange transition_version(const ManagedKey& key, std::string_view kid, VersionState to,
                                   const std::string& reason);

    /// Erases a version's key material (token object or wrapped blob).
    void destroy_version_material(const ManagedKey& key, std::string_view kid);

private:
    HandleCache::Ref working_handle(const token::Session& s, const ManagedKey& key, const KeyVersion& v);
    void transition(const ManagedKey& key, const KeyVersion& v, VersionState to, const std::string& reason,
                    std::vector<StateChange>& done);
    void destroy_material(const ManagedKey& key, const KeyVersion& v);

    token::Token& token_;
    Store& store_;
    RootKeys roots_;
    const Clock& clock_;
    audit::Log& audit_;
    std::string actor_;
    HandleCache cache_;
};

}  // namespace kw::core
