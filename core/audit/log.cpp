#include "core/audit/log.hpp"

#include <utility>

#include "core/error.hpp"
#include "core/thread_name.hpp"

namespace kw::core::audit {

Log::Log(Sink& sink, Keys& keys, const Clock& clock, LogOptions options)
    : sink_(sink), keys_(keys), clock_(clock), options_(std::move(options)) {
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
    if (!options_.spool_store_path.empty()) recover_spools();
    if (options_.spool && !options_.spool_store_path.empty()) {
        spool_series_ = SpoolFile::new_series();
        spool_.emplace(SpoolFile::create(options_.spool_store_path, spool_series_, spool_number_++));
        ingester_ = std::thread([this] {
            name_this_thread("kw-audit-ingest");
            ingest_loop();
        });
    }
}

Log::~Log() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    ingest_wake_.notify_all();
    ingested_.notify_all();
    if (ingester_.joinable()) ingester_.join();  // its last round stores what is left
    if (spool_) {
        std::lock_guard lock(mutex_);
        if (pending_.records.empty() && !retry_ && ingest_error_.empty()) {
            // File first: a crash in between leaves a mark without a spool
            // (harmless), never a spool without its mark (taken twice).
            spool_->remove();
            try {
                sink_.forget_spool(spool_->id());
            } catch (const std::exception&) {
            }
        }
        // Otherwise the spool stays, and the next process to open the log
        // stores what it holds.
    }
}

void Log::recover_spools() {
    for (const auto& path : SpoolFile::list(options_.spool_store_path)) {
        auto spool = SpoolFile::adopt(path);
        if (!spool) continue;  // its writer is alive
        const std::uint64_t from = sink_.spool_ingested(spool->id());
        auto contents = spool->read_from(from);
        if (!contents.events.empty() || contents.bad_bytes != 0) {
            // The recovered events were not MAC'd when they were written:
            // the marker says where they came from, ahead of them.
            Batch batch;
            batch.records.push_back(Record{EventType::audit_recovered,
                                           "audit-recovery",
                                           "",
                                           "",
                                           "recover_spool",
                                           "ok",
                                           {{"spool", spool->id()},
                                            {"events", contents.events.size()},
                                            {"from_offset", from},
                                            {"unreadable_bytes", contents.bad_bytes}}});
            batch.times.push_back(clock_.now());
            for (auto& e : contents.events) {
                batch.records.push_back(std::move(e.record));
                batch.times.push_back(e.time);
            }
            batch.spool_id = spool->id();
            batch.spool_end = contents.events.empty() ? from : contents.events.back().end;
            write(batch);  // throws: the log is not opened with events missing
        }
        spool->remove();
        sink_.forget_spool(spool->id());
    }
}

void Log::ingest_loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
        // Asleep while there is nothing to store (an idle daemon does not
        // wake every interval); then the first event waits at most one
        // interval for company, so a batch stays small and short.
        ingest_wake_.wait(lock, [this] {
            return stopping_ || flush_requested_ || retry_ || !pending_.records.empty() || pending_.force_checkpoint;
        });
        ingest_wake_.wait_for(lock, options_.ingest_interval, [this] {
            return stopping_ || flush_requested_ || pending_.records.size() >= options_.max_batch;
        });
        const bool last = stopping_;
        flush_requested_ = false;
        ingest(lock);
        if (last) return;
    }
}

void Log::ingest(std::unique_lock<std::mutex>& lock) {
    Batch batch;
    if (retry_) {
        // A batch the store refused goes first, alone: it may belong to a
        // spool that has been rotated out, and its mark is that spool's.
        batch = std::move(*retry_);
        retry_.reset();
    } else {
        if (pending_.records.empty() && !pending_.force_checkpoint) return;
        batch = std::move(pending_);
        pending_ = Batch{};
        batch.spool_id = spool_->id();
        if (spool_->size() >= options_.spool_rotate_bytes) {
            // This batch is the last of the current spool: later records go
            // to a fresh one, and the old file goes once this batch is stored.
            try {
                SpoolFile fresh = SpoolFile::create(options_.spool_store_path, spool_series_, spool_number_++);
                retired_.push_back(std::move(*spool_));
                spool_.emplace(std::move(fresh));
            } catch (const std::exception&) {
                // Keep appending to the current one; rotation is tried again next time.
            }
        }
    }
    writing_ = true;
    lock.unlock();
    std::string error;
    bool locked = false;
    try {
        write(batch);
    } catch (const Error& e) {
        error = e.what();
        locked = e.kind() == ErrorKind::store_locked;
    } catch (const std::exception& e) {
        error = e.what();
        if (error.empty()) error = "unknown error";
    }
    // A rotated-out spool whose last batch is now stored is deleted, file
    // first, then its mark (as in ~Log). Done without mutex_: the store
    // write must not hold up callers.
    if (error.empty()) {
        for (auto it = retired_.begin(); it != retired_.end(); ++it) {
            if (it->id() != batch.spool_id) continue;
            it->remove();
            try {
                sink_.forget_spool(batch.spool_id);
            } catch (const std::exception&) {
                // A mark without a file is harmless: recovery only looks at files.
            }
            break;
        }
    }
    lock.lock();
    writing_ = false;
    ++attempts_;
    if (error.empty()) {
        stored_ += batch.records.size();
        ingest_error_.clear();
        std::erase_if(retired_, [](const SpoolFile& s) { return !s.open(); });
    } else {
        // Tried again first, alone, at the next round; new records keep
        // going to the spool meanwhile (record() refuses them while the
        // error stands, so little accumulates).
        ingest_error_ = error;
        ingest_locked_ = locked;
        retry_ = std::move(batch);
    }
    ingested_.notify_all();
}

void Log::flush() {
    std::unique_lock lock(mutex_);
    if (!spool_) return;
    const std::uint64_t target = submitted_;
    const std::uint64_t tries = attempts_;
    flush_requested_ = true;
    ingest_wake_.notify_one();
    const auto done = [&] { return stored_ >= target && !pending_.force_checkpoint && !retry_; };
    const auto failed = [&] { return attempts_ > tries && !ingest_error_.empty(); };
    ingested_.wait(lock, [&] { return done() || failed() || stopping_; });
    if (!done()) {
        const std::string why = ingest_error_.empty() ? "audit log is shutting down" : ingest_error_;
        if (ingest_locked_) throw Error(ErrorKind::store_locked, "audit log write failed: " + why);
        throw Error(ErrorKind::audit_failure, "audit log write failed: " + why);
    }
}

std::uint64_t Log::record(Record record) {
    return wait(submit(std::move(record)));
}

Log::Ticket Log::submit(Record record) {
    if (spool_) {
        const UnixTime now = clock_.now();
        std::unique_lock lock(mutex_);
        // Bounded memory: a store far behind slows callers down.
        ingested_.wait(lock, [this] {
            return stopping_ || !ingest_error_.empty() || pending_.records.size() < 16 * options_.max_batch;
        });
        if (stopping_) throw Error(ErrorKind::audit_failure, "audit log is shutting down");
        if (!ingest_error_.empty()) {
            const std::string why = "the audit log cannot reach the store: " + ingest_error_;
            throw Error(ingest_locked_ ? ErrorKind::store_locked : ErrorKind::audit_failure, why);
        }
        std::uint64_t end = 0;
        try {
            end = spool_->append(record, now);  // throws: nothing recorded
            spool_error_.clear();
        } catch (const std::exception& e) {
            spool_error_ = std::string("cannot write the audit spool: ") + e.what();
            throw;
        }
        pending_.records.push_back(std::move(record));
        pending_.times.push_back(now);
        pending_.spool_end = end;
        ++submitted_;
        const std::size_t n = pending_.records.size();
        if (n == 1 || n >= options_.max_batch) ingest_wake_.notify_one();
        return Ticket{};  // durable now: wait() has nothing to wait for
    }
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
    if (!ticket.state) return 0;  // spooled
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
    if (spool_) {
        lock.unlock();
        flush();
        return;
    }
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

std::string Log::write_error() {
    std::lock_guard lock(mutex_);
    return ingest_error_.empty() ? spool_error_ : ingest_error_;
}

std::size_t Log::queue_depth() {
    std::lock_guard lock(mutex_);
    return pending_.records.size() + (retry_ ? retry_->records.size() : 0);
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
        out.events.reserve(batch.records.size());
        // Copied, not moved: a spooled batch the store refused is tried again.
        for (std::size_t i = 0; i < batch.records.size(); ++i) {
            const Record& r = batch.records[i];
            Event e;
            e.type = r.type;
            e.actor = r.actor;
            e.key = r.key;
            e.kid = r.kid;
            e.operation = r.operation;
            e.outcome = r.outcome;
            e.details = r.details.dump();
            e.seq = ++seq;
            e.time = batch.times.empty() ? now : batch.times[i];
            e.prev_hash = prev;
            e.hash = compute_hash(e);
            prev = e.hash;
            out.events.push_back(std::move(e));
        }
        // One MAC per batch, on its last event (the seal): that event's hash
        // chains every event before it, so the seal covers the whole batch.
        if (!out.events.empty()) {
            auto& seal = out.events.back();
            seal.mac = std::move(keys_.macs(std::span<const std::string>(&seal.hash, 1)).front());
        }
        const std::uint64_t cp_seq = last_cp ? last_cp->seq : 0;
        const UnixTime cp_time = last_cp ? last_cp->time : last_checkpoint_time_;
        if (seq > cp_seq && (batch.force_checkpoint || seq - cp_seq >= options_.checkpoint_every ||
                             now - cp_time >= options_.checkpoint_seconds)) {
            out.checkpoint = Checkpoint{seq, prev, now, ""};
            out.checkpoint->signature = keys_.sign_checkpoint(*out.checkpoint);
        }
        if (!batch.spool_id.empty()) out.spool_mark = Sink::SpoolMark{batch.spool_id, batch.spool_end};
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
