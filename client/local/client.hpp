#pragma once
// A client of keywardend's local binary protocol (docs/local-protocol.md),
// shared by the PKCS#11 module and the OpenSSL provider.
//
// Blocking and thread-safe: each call borrows a connection from a small
// pool, so concurrent threads each get their own connection and nothing is
// multiplexed. There are no background threads, so fork() is safe: the first
// call in a child notices the new pid and opens fresh connections. A
// connection that breaks (daemon restarted) is replaced and the call retried
// once; when the daemon is down the call throws ConnectionError.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "client/local/connection.hpp"
#include "core/wire/codec.hpp"
#include "core/wire/protocol.hpp"
#include "token/secret.hpp"

namespace kw::client {

/// keywardend answered with a status other than ok.
class RefusedError : public std::runtime_error {
public:
    RefusedError(wire::Status status, const std::string& message)
        : std::runtime_error(std::string(wire::to_string(status)) + ": " + message), status_(status) {}
    [[nodiscard]] wire::Status status() const noexcept { return status_; }

private:
    wire::Status status_;
};

struct VersionInfo {
    std::string kid;
    bool can_verify = true;
    std::vector<std::uint8_t> spki;  // DER SubjectPublicKeyInfo; empty for HMAC
};

struct KeyInfo {
    std::string name;
    std::string type;  // "hmac", "rsa", "ecdsa", "ed25519", "jwt_signing", ...
    wire::Family family = wire::Family::hmac;
    std::uint32_t secret_bits = 0;  // HMAC keys: the secret's size
    bool can_sign = false;
    std::string signing_kid;
    std::vector<VersionInfo> versions;
};

struct Identity {
    std::string name;  // the credential's key name
    std::string kid;
    std::uint64_t expires_at = 0;  // unix seconds, 0: never
};

struct Signature {
    std::string kid;
    std::vector<std::uint8_t> bytes;
    std::uint64_t generation = 0;  // the daemon's keys generation before it checked
};

struct SignCheck {
    std::string kid;               // the version that would sign now
    std::uint64_t generation = 0;  // the daemon's keys generation before it checked
};

/// How long a daemon answer vouches that no key changed (recently_checked).
inline constexpr std::chrono::microseconds kCheckFresh{1000};

class LocalClient {
public:
    LocalClient(std::string socket_path, std::string client_name);
    ~LocalClient();
    LocalClient(const LocalClient&) = delete;
    LocalClient& operator=(const LocalClient&) = delete;

    /// Authenticates with an API token: checks it now (hello on a fresh
    /// connection) and keeps it, wiped on logout(), for the connections
    /// opened later. Throws RefusedError or ConnectionError.
    Identity login(std::string_view credential);
    /// Forgets the credential and closes every idle connection.
    void logout();
    [[nodiscard]] bool logged_in() const;

    [[nodiscard]] std::vector<KeyInfo> list_keys();
    /// The kid that would sign now; throws RefusedError when the key may not
    /// sign. A passed check is remembered for recently_checked().
    SignCheck sign_check(const std::string& key, wire::Mechanism mechanism);
    /// True when sign_check(key, mechanism) passed at the keys generation the
    /// daemon reported in its latest answer (to sign or sign_check, on any
    /// connection), and that answer is less than kCheckFresh old: as far as
    /// the daemon could tell, no key changed since the check. A caller that
    /// signs in a loop may then skip the check's round trip. sign() is
    /// checked in full by the daemon either way; a change that lands in the
    /// window is refused there instead of at the check.
    [[nodiscard]] bool recently_checked(const std::string& key, wire::Mechanism mechanism) const;
    Signature sign(const std::string& key, wire::Mechanism mechanism, std::span<const std::uint8_t> data);
    /// `kid` empty: any version allowed to verify.
    bool verify(const std::string& key, const std::string& kid, wire::Mechanism mechanism,
                std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature);
    std::vector<std::uint8_t> random(std::size_t n);
    /// Throws ConnectionError when keywardend cannot be reached.
    void ping();

private:
    // Sends `request` and returns a reader over the ok answer (the body is
    // kept in `answer`). Throws RefusedError / ConnectionError.
    wire::Reader call(const wire::Writer& request, std::vector<std::uint8_t>& answer);
    std::unique_ptr<Connection> checkout();
    void checkin(std::unique_ptr<Connection> c);
    // Authenticates a fresh connection with the kept credential (nullopt:
    // none kept, the connection stays unauthenticated).
    std::optional<Identity> hello(Connection& c);
    void heard(std::uint64_t generation);
    void forget_checks();

    std::string socket_path_;
    std::string client_name_;
    mutable std::mutex mutex_;
    token::SecretString credential_;
    std::vector<std::unique_ptr<Connection>> idle_;
    pid_t pid_;

    // recently_checked(): passed checks by (key, mechanism) with the
    // generation they were made at, and the newest answer's generation.
    mutable std::mutex checks_mutex_;
    std::map<std::pair<std::string, std::uint8_t>, std::uint64_t> checked_;
    std::uint64_t last_generation_ = 0;
    std::chrono::steady_clock::time_point last_heard_{};
};

}  // namespace kw::client
