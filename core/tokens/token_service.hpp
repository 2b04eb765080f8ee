#pragma once
// API tokens and provisioning tokens on top of KeyService.
//
// A token key (type api_token or provisioning) is a managed key whose
// versions are tokens. Issuing draws the random body from the token
// (C_GenerateRandom), shows the token once, and stores only
// HMAC-SHA256(token pepper, token) computed in the token. Verification
// answers with a code, never a bare boolean.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/key_service.hpp"
#include "core/tokens/usage.hpp"
#include "token/secret.hpp"
#include "token/session_copy.hpp"

namespace kw::core::tokens {

enum class VerifyCode {
    VALID,
    NOT_FOUND,
    EXPIRED,
    REVOKED,
    DISABLED,  // suspended (or not yet active)
    USAGE_EXCEEDED,
    INSUFFICIENT_SCOPE,
    MALFORMED,
    RATE_LIMITED,  // decided above this layer (keywardend)
};
[[nodiscard]] std::string_view to_string(VerifyCode c);

struct IssueRequest {
    std::string name;
    KeyType type = KeyType::api_token;  // or provisioning
    std::vector<std::string> scopes;
    std::optional<std::int64_t> expires_in;  // provisioning default: 1 hour
    std::string prefix = "kw_live";
    std::optional<std::int64_t> max_uses;  // provisioning default: 1
    // Credits: when the allowance is restored (core/refill.hpp), and to how
    // many uses (default: max_uses).
    std::optional<RefillSchedule> refill;
    std::optional<std::int64_t> refill_amount;
    std::string owner;
    std::map<std::string, std::string> labels;
};

struct IssuedToken {
    ManagedKey key;
    token::SecretString token;  // shown once
    std::string display;
};

struct Verification {
    VerifyCode code = VerifyCode::NOT_FOUND;
    std::string key_id;
    std::string name;
    std::string kid;
    std::vector<std::string> scopes;
    std::optional<UnixTime> expires_at;
    std::optional<std::int64_t> remaining_uses;  // nullopt: unlimited
    std::optional<UnixTime> next_refill;         // credits refill then (nullopt: never)
};

/// True when `granted` scopes allow `required`: exact match, a glob in the
/// grant ("sign:payments-*"), "admin" (allows everything) or "read_write"
/// (allows "read_only").
[[nodiscard]] bool scope_allows(const std::vector<std::string>& granted, std::string_view required);

class TokenService {
public:
    /// With `usage`, uses of unlimited tokens are counted there and flushed
    /// in batches (keywardend); without, every use is a store write (CLI).
    explicit TokenService(KeyService& keys, UsageAccumulator* usage = nullptr);

    /// Issues a new token key. Throws Error(invalid_argument/already_exists).
    IssuedToken issue(const IssueRequest& request);
    /// Issues a successor token on an existing token key (used by rotation).
    /// `kid` lets rotation choose and record the kid before issuing.
    IssuedToken issue_version(std::string_view name, std::optional<std::string> kid = {});

    /// Verifies a token. MALFORMED is decided from the string alone: no store
    /// access, no token (HSM) call, no audit event (garbage must not be able
    /// to flood the HSM; keywardend counts it in metrics). Every other
    /// outcome except RATE_LIMITED is audited here.
    ///
    /// `gate`, when given, runs after every other check passed and before a
    /// use is counted; returning false answers RATE_LIMITED (keywardend's
    /// rate limiter), so a refused request does not spend a use. The caller
    /// that owns the gate audits its refusals (keywardend samples them).
    /// A VALID answer spends `cost` uses of a credit-limited token (all or
    /// none: USAGE_EXCEEDED when fewer are left).
    Verification verify(std::string_view token, std::optional<std::string_view> required_scope = {},
                        const std::function<bool(const Verification&)>& gate = {}, std::int64_t cost = 1);

    /// Token keys with their token records.
    struct Listed {
        ManagedKey key;
        std::vector<TokenRecord> tokens;
    };
    [[nodiscard]] std::vector<Listed> list();

private:
    std::vector<std::uint8_t> digest(int pepper_version, std::string_view token);
    IssuedToken make_token(ManagedKey& key, int version, const std::string& prefix,
                           std::optional<std::int64_t> max_uses, TokenRecord& record,
                           std::optional<std::string> kid = {});
    Verification finish(Verification v, const ManagedKey& key);
    [[nodiscard]] bool count_use(const TokenRecord& rec, UnixTime now, std::int64_t cost);

    KeyService& keys_;
    UsageAccumulator* usage_;
    // Session copies of the peppers, by pepper version: every verification
    // is one HMAC (token/session_copy.hpp). The root keys are fixed for the
    // service's life, so the map is built once and read without a lock.
    std::map<int, std::unique_ptr<token::SessionCopy>> pepper_copies_;
};

}  // namespace kw::core::tokens
