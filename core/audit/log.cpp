#include "core/audit/log.hpp"

#include "core/error.hpp"

namespace kw::core::audit {

Log::Log(Sink& sink, Keys& keys, const Clock& clock, LogOptions options)
    : sink_(sink), keys_(keys), clock_(clock), options_(options) {
    if (auto last = sink_.last_event()) {
        head_seq_ = last->seq;
        head_hash_ = last->hash;
    }
    if (auto cp = sink_.last_checkpoint()) {
        last_checkpoint_seq_ = cp->seq;
        last_checkpoint_time_ = cp->time;
    } else {
        last_checkpoint_time_ = clock_.now();
    }
}

Log::~Log() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
}

std::uint64_t Log::record(Record record) {
    return wait(submit(std::move(record)));
}

Log::Ticket Log::submit(Record record) {
    std::lock_guard lock(mutex_);
    if (stopping_) throw Error(ErrorKind::audit_failure, "audit log is shutting down");
    Ticket t;
    t.index = pending_.records.size();
    pending_.records.push_back(std::move(record));
    t.state = pending_.state;
    return t;
}

std::uint64_t Log::wait(const Ticket& ticket) {
    // A leader already writing may take the event with its next batch while
    // the caller works; otherwise the caller leads the write itself here.
    const auto state = std::static_pointer_cast<BatchState>(ticket.state);
    const std::size_t index = ticket.index;
    std::unique_lock lock(mutex_);
    lead(lock, state);
    if (!state->error.empty()) {
        // Either way the operation is refused (fail closed); a busy store is
        // reported as such so callers can tell "retry" from "broken".
        if (state->locked) throw Error(ErrorKind::store_locked, "audit log write failed: " + state->error);
        throw Error(ErrorKind::audit_failure, "audit log write failed: " + state->error);
    }
    return state->first_seq + index;
}

void Log::checkpoint_now() {
    std::unique_lock lock(mutex_);
    pending_.force_checkpoint = true;
    const std::shared_ptr<BatchState> state = pending_.state;
    lead(lock, state);
    if (!state->error.empty()) {
        if (state->locked) throw Error(ErrorKind::store_locked, "audit checkpoint failed: " + state->error);
        throw Error(ErrorKind::audit_failure, "audit checkpoint failed: " + state->error);
    }
}

void Log::lead(std::unique_lock<std::mutex>& lock, const std::shared_ptr<BatchState>& state) {
    // A leader whose own batch is done goes on with what queued meanwhile,
    // for a few batches: handing over to a sleeping follower would put a
    // thread wake-up (milliseconds on a loaded machine) between two batches.
    constexpr int kExtraBatches = 4;
    int extra = 0;
    for (;;) {
        if (state->done) {
            if (writing_ || (pending_.records.empty() && !pending_.force_checkpoint) || extra == kExtraBatches) return;
            ++extra;
        } else if (writing_) {
            done_.wait(lock);  // another leader's batch; ours may be the next
            continue;
        }
        // Lead: take everything queued (ours included) as one batch.
        writing_ = true;
        Batch batch = std::move(pending_);
        pending_ = Batch{};
        lock.unlock();
        try {
            write(batch);
        } catch (const Error& e) {
            batch.state->error = e.what();
            batch.state->locked = e.kind() == ErrorKind::store_locked;
        } catch (const std::exception& e) {
            batch.state->error = e.what();
            if (batch.state->error.empty()) batch.state->error = "unknown error";
        }
        lock.lock();
        batch.state->done = true;
        writing_ = false;
        // Wakes the batch's callers, and those queued meanwhile: one of them leads next.
        done_.notify_all();
    }
}

std::uint64_t Log::head_seq() {
    std::lock_guard lock(mutex_);
    return head_seq_;
}

std::size_t Log::queue_depth() {
    std::lock_guard lock(mutex_);
    return pending_.records.size();
}

void Log::write(Batch& batch) {
    const UnixTime now = clock_.now();
    // The chain head is read inside the write transaction, so other processes
    // appending to the same log (hsm-keytool next to keywardend) are chained
    // onto, never collided with. MACs and the checkpoint signature are made
    // in the token while the transaction holds the write lock.
    auto built = sink_.append_at_head([&](const std::optional<Event>& head, const std::optional<Checkpoint>& last_cp) {
        Sink::Batch out;
        std::uint64_t seq = head ? head->seq : 0;
        std::string prev = head ? head->hash : std::string();
        std::vector<std::string> hashes;
        hashes.reserve(batch.records.size());
        out.events.reserve(batch.records.size());
        // The records are not needed after this batch: move their strings.
        // (A retry after a busy store rebuilds from a fresh head, but never
        // from these records: a failed batch is reported to its callers.)
        for (auto& r : batch.records) {
            Event e;
            e.type = r.type;
            e.actor = std::move(r.actor);
            e.key = std::move(r.key);
            e.kid = std::move(r.kid);
            e.operation = std::move(r.operation);
            e.outcome = std::move(r.outcome);
            e.details = r.details.dump();
            e.seq = ++seq;
            e.time = now;
            e.prev_hash = prev;
            e.hash = compute_hash(e);
            prev = e.hash;
            hashes.push_back(e.hash);
            out.events.push_back(std::move(e));
        }
        auto macs = keys_.macs(hashes);
        for (std::size_t i = 0; i < out.events.size(); ++i) out.events[i].mac = std::move(macs[i]);
        const std::uint64_t cp_seq = last_cp ? last_cp->seq : 0;
        const UnixTime cp_time = last_cp ? last_cp->time : last_checkpoint_time_;
        if (seq > cp_seq && (batch.force_checkpoint || seq - cp_seq >= options_.checkpoint_every ||
                             now - cp_time >= options_.checkpoint_seconds)) {
            out.checkpoint = Checkpoint{seq, prev, now, ""};
            out.checkpoint->signature = keys_.sign_checkpoint(*out.checkpoint);
        }
        return out;
    });
    std::lock_guard lock(mutex_);  // head_seq() and queue_depth() read under it
    if (!built.events.empty()) {
        batch.state->first_seq = built.events.front().seq;
        head_seq_ = built.events.back().seq;
        head_hash_ = built.events.back().hash;
    }
    if (built.checkpoint) {
        last_checkpoint_seq_ = built.checkpoint->seq;
        last_checkpoint_time_ = built.checkpoint->time;
    }
}

}  // namespace kw::core::audit
