#pragma once
// Audit chain verification: finds the first event that was edited, deleted,
// inserted or reordered, a MAC that is not the token's, a checkpoint whose
// signature or head does not match, or a log cut short before its last
// checkpoint.
//
// Online (hsm-keytool audit verify) it also checks every seal in the token:
// the MAC the last event of each committed batch carries, over its hash,
// which chains every event before it (the others carry no MAC). An edit
// anywhere in a batch therefore breaks that batch's seal, and events after
// the last seal (appended without the audit MAC key) are `unsealed`. Offline (an export and the signing public key
// alone) MACs cannot be checked; the chain and the signed checkpoints still prove that nothing up to the last
// checkpoint changed. Events after the last checkpoint are reported as an unsigned tail.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/audit/event.hpp"

namespace kw::core::audit {

enum class Problem { none, edited, deleted, inserted, reordered, bad_mac, bad_checkpoint, truncated, unsealed };
[[nodiscard]] std::string_view to_string(Problem p);

struct Report {
    bool ok = true;
    std::uint64_t events = 0;
    std::uint64_t checkpoints = 0;
    std::uint64_t unsigned_tail = 0;  // events after the last checkpoint
    bool macs_checked = false;
    std::optional<std::uint64_t> first_bad_seq;
    Problem problem = Problem::none;
    std::string message;
};

struct VerifyOptions {
    std::vector<std::uint8_t> public_key;  // SPKI DER of the audit signing key
    // Online only: checks one event's MAC in the token.
    std::function<bool(const std::string& hash, const std::string& mac)> check_mac;
    // Error path only: the seq of the stored event whose hash is `hash`.
    std::function<std::optional<std::uint64_t>(const std::string& hash)> find_hash;
};

/// Streaming verifier: feed events in seq order, then finish().
class Verifier {
public:
    Verifier(std::vector<Checkpoint> checkpoints, VerifyOptions options);
    /// Returns false once a problem is found (stop feeding).
    bool feed(Event event);
    [[nodiscard]] Report finish();

private:
    bool check(const Event& e, const Event* next);
    bool fail(std::uint64_t seq, Problem p, std::string message);

    std::vector<Checkpoint> checkpoints_;
    std::size_t next_checkpoint_ = 0;
    VerifyOptions options_;
    std::optional<Event> held_;  // one event of lookahead
    std::uint64_t expected_ = 1;
    std::string prev_hash_;
    std::uint64_t last_checkpoint_seq_ = 0;
    std::optional<std::uint64_t> unsealed_from_;  // first event not yet covered by a seal
    Report report_;
};

}  // namespace kw::core::audit
