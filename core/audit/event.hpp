#pragma once
// Audit events and their canonical form.
//
// The canonical encoding is the byte string the hash covers: every field but
// hash and mac, seq and prev_hash included, each written as <length>:<bytes>
// so no two different events share an encoding. Editing, reordering or
// re-linking any event therefore changes a hash. (A length-prefixed string is
// used rather than canonical JSON because verification hashes a million
// events a second.)
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"

namespace kw::core::audit {

enum class EventType {
    key_created,
    key_retrieved,  // public key or metadata read
    key_used,       // sign, HMAC, token verification
    key_revoked,
    key_rotated,
    verify_failed,
    state_changed,
    token_issued,
    admin_login,
    admin_login_failed,
    policy_changed,
    rate_limited,
    audit_recovered,  // events taken from a crashed writer's spool (spool.hpp)
};

[[nodiscard]] std::string_view to_string(EventType t);
[[nodiscard]] std::optional<EventType> parse_event_type(std::string_view s);

/// What a caller asks to record.
struct Record {
    EventType type = EventType::key_used;
    std::string actor;                                  // who: "cli:alice", "api:<pseudonym>"
    std::string key;                                    // key name, "" if none
    std::string kid;                                    // version, "" if none
    std::string operation;                              // "sign", "verify", "generate", ...
    std::string outcome;                                // "ok", "denied", "error", a verification code
    nlohmann::json details = nlohmann::json::object();  // never secrets
};

/// A stored event: the record plus its place in the chain.
struct Event {
    EventType type = EventType::key_used;
    std::string actor;
    std::string key;
    std::string kid;
    std::string operation;
    std::string outcome;
    std::string details;  // compact JSON text, exactly as hashed
    std::uint64_t seq = 0;
    UnixTime time = 0;
    std::string prev_hash;  // hex SHA-256 of the previous event ("" before the first)
    std::string hash;       // hex SHA-256 of canonical()
    std::string mac;        // hex HMAC-SHA256(audit MAC key, hash), computed in the token
};

/// A signed statement "the log had `seq` events ending in `head_hash` at `time`".
struct Checkpoint {
    std::uint64_t seq = 0;
    std::string head_hash;
    UnixTime time = 0;
    std::string signature;  // hex DER ECDSA P-256 over payload()
};

[[nodiscard]] std::string canonical(const Event& e);
[[nodiscard]] std::string compute_hash(const Event& e);
/// The bytes a checkpoint signature covers.
[[nodiscard]] std::string checkpoint_payload(const Checkpoint& c);

[[nodiscard]] nlohmann::json to_json(const Event& e);
[[nodiscard]] Event event_from_json(const nlohmann::json& j);  // throws nlohmann::json::exception
[[nodiscard]] nlohmann::json to_json(const Checkpoint& c);
[[nodiscard]] Checkpoint checkpoint_from_json(const nlohmann::json& j);

}  // namespace kw::core::audit
