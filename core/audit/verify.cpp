#include "core/audit/verify.hpp"

#include <algorithm>

#include "core/audit/keys.hpp"

namespace kw::core::audit {

std::string_view to_string(Problem p) {
    switch (p) {
        case Problem::none: return "none";
        case Problem::edited: return "edited";
        case Problem::deleted: return "deleted";
        case Problem::inserted: return "inserted";
        case Problem::reordered: return "reordered";
        case Problem::bad_mac: return "bad_mac";
        case Problem::bad_checkpoint: return "bad_checkpoint";
        case Problem::truncated: return "truncated";
        case Problem::unsealed: return "unsealed";
    }
    return "unknown";
}

Verifier::Verifier(std::vector<Checkpoint> checkpoints, VerifyOptions options)
    : checkpoints_(std::move(checkpoints)), options_(std::move(options)) {
    std::sort(checkpoints_.begin(), checkpoints_.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
    report_.macs_checked = static_cast<bool>(options_.check_mac);
}

bool Verifier::fail(std::uint64_t seq, Problem p, std::string message) {
    report_.ok = false;
    report_.first_bad_seq = seq;
    report_.problem = p;
    report_.message = std::move(message);
    return false;
}

bool Verifier::feed(Event event) {
    if (!report_.ok) return false;
    if (held_) {
        Event current = std::move(*held_);
        held_ = std::move(event);
        return check(current, &*held_);
    }
    held_ = std::move(event);
    return true;
}

bool Verifier::check(const Event& e, const Event* next) {
    const std::uint64_t n = expected_;
    if (e.seq > n) {
        return fail(n, Problem::deleted,
                    "events " + std::to_string(n) + (e.seq - 1 > n ? ".." + std::to_string(e.seq - 1) : "") +
                        " are missing (next present event is " + std::to_string(e.seq) + ")");
    }
    if (e.seq < n) return fail(e.seq, Problem::inserted, "seq " + std::to_string(e.seq) + " appears twice");

    if (compute_hash(e) != e.hash) {
        // Is this a genuine event that was moved? Its prev_hash names its
        // true predecessor; re-hashing at the position after that one must
        // reproduce the stored hash.
        if (options_.find_hash) {
            if (auto m = options_.find_hash(e.prev_hash)) {
                // Where did it come from? Its true seq is one past its true
                // predecessor, unless that predecessor moved too (adjacent
                // swaps, a row moved to the end): try the few places it can be.
                for (std::uint64_t candidate : {*m + 1, *m, n + 1, n - 1}) {
                    if (candidate == 0 || candidate == e.seq) continue;
                    Event moved = e;
                    moved.seq = candidate;
                    if (compute_hash(moved) == e.hash) {
                        return fail(n, Problem::reordered,
                                    "event at seq " + std::to_string(n) + " is event " + std::to_string(candidate) +
                                        " moved out of place");
                    }
                }
            }
        }
        if (e.prev_hash != prev_hash_) {
            return fail(
                n, Problem::inserted,
                "event at seq " + std::to_string(n) + " is not part of the chain (hash and link are both wrong)");
        }
        return fail(n, Problem::edited,
                    "event " + std::to_string(n) + " was changed after it was written (hash mismatch)");
    }
    if (e.prev_hash != prev_hash_) {
        if (options_.find_hash) {
            if (auto m = options_.find_hash(e.prev_hash)) {
                return fail(n, Problem::reordered,
                            "event " + std::to_string(n) + " links to event " + std::to_string(*m) + ", not to " +
                                std::to_string(n - 1));
            }
        }
        return fail(
            n, Problem::inserted,
            "event " + std::to_string(n) + " does not link to event " + std::to_string(n - 1) + " (re-hashed chain)");
    }
    if (options_.check_mac) {
        if (e.mac.empty()) {
            if (!unsealed_from_) unsealed_from_ = n;  // a later seal must cover it
        } else if (!options_.check_mac(e.hash, e.mac)) {
            const std::uint64_t from = unsealed_from_.value_or(n);
            if (from == n && next != nullptr && next->prev_hash == prev_hash_) {
                return fail(n, Problem::inserted,
                            "event " + std::to_string(n) +
                                " was inserted: its MAC is not the token's and the next event links past it");
            }
            if (from < n) {
                return fail(from, Problem::bad_mac,
                            "the seal on event " + std::to_string(n) + " (the MAC covering events " +
                                std::to_string(from) + ".." + std::to_string(n) +
                                ") is not the token's: one of them was changed and the chain re-hashed, or forged");
            }
            return fail(n, Problem::bad_mac,
                        "event " + std::to_string(n) + " has a MAC the token did not make (forged or re-hashed)");
        } else {
            unsealed_from_.reset();
        }
    }
    while (next_checkpoint_ < checkpoints_.size() && checkpoints_[next_checkpoint_].seq == n) {
        const Checkpoint& cp = checkpoints_[next_checkpoint_++];
        if (cp.head_hash != e.hash) {
            return fail(n, Problem::bad_checkpoint,
                        "checkpoint at seq " + std::to_string(n) + " names a different head hash");
        }
        if (!verify_checkpoint(options_.public_key, cp)) {
            return fail(n, Problem::bad_checkpoint, "checkpoint at seq " + std::to_string(n) + " has a bad signature");
        }
        ++report_.checkpoints;
        last_checkpoint_seq_ = n;
    }
    if (next_checkpoint_ < checkpoints_.size() && checkpoints_[next_checkpoint_].seq < n) {
        const auto& cp = checkpoints_[next_checkpoint_];
        return fail(cp.seq, Problem::bad_checkpoint, "checkpoint at seq " + std::to_string(cp.seq) + " has no event");
    }
    prev_hash_ = e.hash;
    expected_ = n + 1;
    ++report_.events;
    return true;
}

Report Verifier::finish() {
    if (report_.ok && held_) {
        Event last = std::move(*held_);
        held_.reset();
        check(last, nullptr);
    }
    if (report_.ok && unsealed_from_) {
        fail(*unsealed_from_, Problem::unsealed,
             "events " + std::to_string(*unsealed_from_) + ".." + std::to_string(expected_ - 1) +
                 " carry no MAC and no sealed event follows them: appended without the audit MAC key");
    }
    if (report_.ok && next_checkpoint_ < checkpoints_.size()) {
        const auto& cp = checkpoints_[next_checkpoint_];
        fail(expected_, Problem::truncated,
             "the log ends at seq " + std::to_string(expected_ - 1) + " but a signed checkpoint covers seq " +
                 std::to_string(cp.seq) + ": events from " + std::to_string(expected_) + " were removed");
    }
    if (report_.ok) {
        report_.unsigned_tail = report_.events - last_checkpoint_seq_;
        report_.message =
            "chain intact: " + std::to_string(report_.events) + " events, " + std::to_string(report_.checkpoints) +
            " signed checkpoints" +
            (report_.macs_checked ? ", every seal (MAC) checked in the token" : ", MACs not checked (offline)");
        if (report_.unsigned_tail > 0) {
            report_.message += "; " + std::to_string(report_.unsigned_tail) + " events after the last checkpoint";
        }
    }
    return report_;
}

}  // namespace kw::core::audit
