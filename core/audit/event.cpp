#include "core/audit/event.hpp"

#include <openssl/evp.h>

#include <array>
#include <utility>

#include "core/encoding.hpp"

namespace kw::core::audit {
namespace {

constexpr std::array<std::pair<EventType, std::string_view>, 13> kTypes{{
    {EventType::key_created, "key_created"},
    {EventType::key_retrieved, "key_retrieved"},
    {EventType::key_used, "key_used"},
    {EventType::key_revoked, "key_revoked"},
    {EventType::key_rotated, "key_rotated"},
    {EventType::verify_failed, "verify_failed"},
    {EventType::state_changed, "state_changed"},
    {EventType::token_issued, "token_issued"},
    {EventType::admin_login, "admin_login"},
    {EventType::admin_login_failed, "admin_login_failed"},
    {EventType::policy_changed, "policy_changed"},
    {EventType::rate_limited, "rate_limited"},
    {EventType::audit_recovered, "audit_recovered"},
}};

}  // namespace

std::string_view to_string(EventType t) {
    for (const auto& [v, n] : kTypes) {
        if (v == t) return n;
    }
    return "unknown";
}

std::optional<EventType> parse_event_type(std::string_view s) {
    for (const auto& [v, n] : kTypes) {
        if (n == s) return v;
    }
    return std::nullopt;
}

namespace {
void put(std::string& out, std::string_view field) {
    out += std::to_string(field.size());
    out += ':';
    out += field;
}
}  // namespace

std::string canonical(const Event& e) {
    std::string out;
    out.reserve(160 + e.actor.size() + e.key.size() + e.details.size());
    out += "kw-audit-v1|";
    put(out, std::to_string(e.seq));
    put(out, std::to_string(e.time));
    put(out, to_string(e.type));
    put(out, e.actor);
    put(out, e.key);
    put(out, e.kid);
    put(out, e.operation);
    put(out, e.outcome);
    put(out, e.details);
    put(out, e.prev_hash);
    return out;
}

std::string compute_hash(const Event& e) {
    const std::string c = canonical(e);
    std::array<std::uint8_t, 32> md{};
    unsigned int len = 0;
    EVP_Digest(c.data(), c.size(), md.data(), &len, EVP_sha256(), nullptr);
    return to_hex(std::span<const std::uint8_t>(md.data(), len));
}

std::string checkpoint_payload(const Checkpoint& c) {
    return "keywarden-audit-checkpoint|" + std::to_string(c.seq) + "|" + c.head_hash + "|" + std::to_string(c.time);
}

nlohmann::json to_json(const Event& e) {
    // details go out as an object when that round-trips to the same bytes,
    // otherwise as the exact string, so an export always re-hashes the same.
    nlohmann::json details = nlohmann::json::parse(e.details, nullptr, false);
    if (details.is_discarded() || details.dump() != e.details) details = e.details;
    return {{"seq", e.seq},
            {"time", e.time},
            {"type", to_string(e.type)},
            {"actor", e.actor},
            {"key", e.key},
            {"kid", e.kid},
            {"op", e.operation},
            {"outcome", e.outcome},
            {"details", details},
            {"prev_hash", e.prev_hash},
            {"hash", e.hash},
            {"mac", e.mac}};
}

Event event_from_json(const nlohmann::json& j) {
    Event e;
    e.seq = j.at("seq").get<std::uint64_t>();
    e.time = j.at("time").get<UnixTime>();
    auto type = parse_event_type(j.at("type").get<std::string>());
    if (!type) throw nlohmann::json::other_error::create(501, "unknown event type", &j);
    e.type = *type;
    e.actor = j.at("actor").get<std::string>();
    e.key = j.at("key").get<std::string>();
    e.kid = j.at("kid").get<std::string>();
    e.operation = j.at("op").get<std::string>();
    e.outcome = j.at("outcome").get<std::string>();
    // Re-serialise the object the way it was written (sorted keys, compact).
    const auto& d = j.at("details");
    e.details = d.is_string() ? d.get<std::string>() : d.dump();
    e.prev_hash = j.at("prev_hash").get<std::string>();
    e.hash = j.at("hash").get<std::string>();
    e.mac = j.value("mac", "");
    return e;
}

nlohmann::json to_json(const Checkpoint& c) {
    return {{"seq", c.seq}, {"head_hash", c.head_hash}, {"time", c.time}, {"signature", c.signature}};
}

Checkpoint checkpoint_from_json(const nlohmann::json& j) {
    Checkpoint c;
    c.seq = j.at("seq").get<std::uint64_t>();
    c.head_hash = j.at("head_hash").get<std::string>();
    c.time = j.at("time").get<UnixTime>();
    c.signature = j.at("signature").get<std::string>();
    return c;
}

}  // namespace kw::core::audit
