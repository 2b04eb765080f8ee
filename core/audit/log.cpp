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
    writer_ = std::thread([this] { run(); });
}

Log::~Log() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    work_.notify_all();
    if (writer_.joinable()) writer_.join();
}

std::uint64_t Log::record(Record record) {
    std::shared_ptr<BatchState> state;
    std::size_t index = 0;
    {
        std::unique_lock lock(mutex_);
        if (stopping_) throw Error(ErrorKind::audit_failure, "audit log is shutting down");
        index = pending_.records.size();
        pending_.records.push_back(std::move(record));
        state = pending_.state;
    }
    work_.notify_one();
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return state->done; });
    if (!state->error.empty()) {
        // Either way the operation is refused (fail closed); a busy store is
        // reported as such so callers can tell "retry" from "broken".
        if (state->locked) throw Error(ErrorKind::store_locked, "audit log write failed: " + state->error);
        throw Error(ErrorKind::audit_failure, "audit log write failed: " + state->error);
    }
    return state->first_seq + index;
}

void Log::checkpoint_now() {
    std::shared_ptr<BatchState> state;
    {
        std::lock_guard lock(mutex_);
        pending_.force_checkpoint = true;
        state = pending_.state;
    }
    work_.notify_one();
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return state->done; });
    if (!state->error.empty()) throw Error(ErrorKind::audit_failure, "audit checkpoint failed: " + state->error);
}

std::uint64_t Log::head_seq() {
    std::lock_guard lock(mutex_);
    return head_seq_;
}

std::size_t Log::queue_depth() {
    std::lock_guard lock(mutex_);
    return pending_.records.size();
}

void Log::run() {
    for (;;) {
        Batch batch;
        {
            std::unique_lock lock(mutex_);
            work_.wait(lock, [&] { return stopping_ || !pending_.records.empty() || pending_.force_checkpoint; });
            if (pending_.records.empty() && !pending_.force_checkpoint) {
                if (stopping_) return;
                continue;
            }
            batch = std::move(pending_);
            pending_ = Batch{};
        }
        try {
            write(batch);
        } catch (const Error& e) {
            batch.state->error = e.what();
            batch.state->locked = e.kind() == ErrorKind::store_locked;
        } catch (const std::exception& e) {
            batch.state->error = e.what();
            if (batch.state->error.empty()) batch.state->error = "unknown error";
        }
        {
            std::lock_guard lock(mutex_);
            batch.state->done = true;
        }
        done_.notify_all();
    }
}

void Log::write(Batch& batch) {
    const UnixTime now = clock_.now();
    std::vector<Event> events;
    events.reserve(batch.records.size());
    std::uint64_t seq = head_seq_;
    std::string prev = head_hash_;
    std::vector<std::string> hashes;
    hashes.reserve(batch.records.size());
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
        events.push_back(std::move(e));
    }
    auto macs = keys_.macs(hashes);
    for (std::size_t i = 0; i < events.size(); ++i) events[i].mac = std::move(macs[i]);

    std::optional<Checkpoint> cp;
    const bool new_events = seq > last_checkpoint_seq_;
    if (new_events && (batch.force_checkpoint || seq - last_checkpoint_seq_ >= options_.checkpoint_every ||
                       now - last_checkpoint_time_ >= options_.checkpoint_seconds)) {
        cp = Checkpoint{seq, prev, now, ""};
        cp->signature = keys_.sign_checkpoint(*cp);
    }
    sink_.append(events, cp);  // throws: nothing above is kept

    batch.state->first_seq = head_seq_ + 1;
    std::lock_guard lock(mutex_);
    head_seq_ = seq;
    head_hash_ = prev;
    if (cp) {
        last_checkpoint_seq_ = cp->seq;
        last_checkpoint_time_ = cp->time;
    }
}

}  // namespace kw::core::audit
