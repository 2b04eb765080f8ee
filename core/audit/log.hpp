#pragma once
// The append-only audit log with group commit.
//
// record() queues an event and blocks until the batch holding it is
// committed: callers that arrive together share one commit (and, with
// durability "power", one fsync). There is no writer thread: the first caller
// that finds nobody writing becomes the leader, takes everything queued (its
// own event and any that arrived meanwhile) and writes it as one batch in its
// own thread; the others wait for that batch, and one of them leads the next.
// A lone caller thus pays no thread hand-off (two context switches per event
// with a writer thread). The leader assigns seq, links prev_hash, hashes,
// MACs each event in the token, and every N events or T seconds adds a
// checkpoint signed by the token, all in the batch's transaction.
//
// Fail closed: if the batch cannot be committed, every record() in it throws
// Error(audit_failure) and the in-memory chain head is left at the last
// committed event, so the log never has a hole.
//
// Callers must not hold a token session lease while calling record(): the
// leader leases one to MAC the batch.
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/audit/event.hpp"
#include "core/audit/keys.hpp"
#include "core/audit/sink.hpp"
#include "core/clock.hpp"

namespace kw::core::audit {

struct LogOptions {
    std::uint64_t checkpoint_every = 1000;  // events
    std::int64_t checkpoint_seconds = 60;
    std::size_t max_batch = 4096;
};

class Log {
public:
    Log(Sink& sink, Keys& keys, const Clock& clock, LogOptions options = {});
    ~Log();  // refuses new records; every record() has returned by then
    Log(const Log&) = delete;
    Log& operator=(const Log&) = delete;

    /// Appends one event; returns its seq once it is durable. Throws
    /// Error(audit_failure) when it could not be written.
    std::uint64_t record(Record record);

    /// record() in two halves, so a caller can do its work while the event
    /// may be committed: submit() queues the event (a leader writing now
    /// takes it with its next batch), wait() leads the write if nobody did and
    /// blocks until it is durable (returning its seq) or throws as record()
    /// does. No session lease may be held across wait(). The caller must not
    /// release the result of that work before wait() returned: fail closed
    /// still holds, only the order of the HSM call and the commit overlaps.
    struct Ticket {
        std::shared_ptr<void> state;
        std::size_t index = 0;
    };
    [[nodiscard]] Ticket submit(Record record);
    std::uint64_t wait(const Ticket& ticket);
    /// Writes a checkpoint for the current head now (if there is anything
    /// new since the last one).
    void checkpoint_now();

    [[nodiscard]] Keys& keys() noexcept { return keys_; }
    [[nodiscard]] Sink& sink() noexcept { return sink_; }
    [[nodiscard]] std::uint64_t head_seq();
    [[nodiscard]] std::size_t queue_depth();

private:
    struct BatchState {
        bool done = false;
        std::string error;
        bool locked = false;  // the store was busy: report store_locked, still refusing the operation
        std::uint64_t first_seq = 0;
    };
    struct Batch {
        std::vector<Record> records;
        std::shared_ptr<BatchState> state = std::make_shared<BatchState>();
        bool force_checkpoint = false;
    };

    /// Writes batches while `state` (the caller's) is not done and nobody
    /// else is writing; `lock` holds mutex_ on entry and on return.
    void lead(std::unique_lock<std::mutex>& lock, const std::shared_ptr<BatchState>& state);
    void write(Batch& batch);

    Sink& sink_;
    Keys& keys_;
    const Clock& clock_;
    LogOptions options_;

    std::mutex mutex_;
    std::condition_variable done_;
    Batch pending_;
    bool writing_ = false;  // a leader is writing a batch
    bool stopping_ = false;

    // The committed chain head (written by the leader under mutex_).
    std::uint64_t head_seq_ = 0;
    std::string head_hash_;
    std::uint64_t last_checkpoint_seq_ = 0;
    UnixTime last_checkpoint_time_ = 0;
};

}  // namespace kw::core::audit
