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
//
// Spooled (LogOptions::spool, keywardend with durability "process"): record()
// appends the event to this process's spool file (spool.hpp) with one
// write() and returns; the event is then durable against kill -9. A
// background thread moves spooled events to the store every
// `ingest_interval`, in batches built exactly as above, and marks in the same
// transaction how much of the spool the store holds. A request thus pays
// one write() instead of a commit and a token MAC. Fail closed still holds:
// a spool write that fails refuses the operation, and while the store cannot
// take the spooled events every new record() is refused too. Events reach
// other readers of the store (hsm-keytool audit ...) within about one
// interval; flush() waits for that.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/audit/event.hpp"
#include "core/audit/keys.hpp"
#include "core/audit/sink.hpp"
#include "core/audit/spool.hpp"
#include "core/clock.hpp"

namespace kw::core::audit {

struct LogOptions {
    std::uint64_t checkpoint_every = 1000;  // events
    std::int64_t checkpoint_seconds = 60;
    std::size_t max_batch = 4096;
    /// The store file spools sit next to. When set, the constructor first
    /// moves into the store the events of any spool whose writer is gone
    /// (a crash), marked by an audit_recovered event, and deletes it.
    std::string spool_store_path;
    /// With spool_store_path: spool this log's own events (see above). Not
    /// for durability "power": the spool is not fsync'd.
    bool spool = false;
    std::chrono::milliseconds ingest_interval{2};
    /// A spool this large is replaced by a fresh one (and deleted once its
    /// last events are stored), so spools do not grow without bound.
    std::uint64_t spool_rotate_bytes = std::uint64_t{64} << 20;
};

class Log {
public:
    Log(Sink& sink, Keys& keys, const Clock& clock, LogOptions options = {});
    ~Log();  // refuses new records; every record() has returned by then
    Log(const Log&) = delete;
    Log& operator=(const Log&) = delete;

    /// Appends one event; returns its seq once it is durable (0 when
    /// spooled: the seq is given when it reaches the store). Throws
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
    /// Spooled: returns once every event recorded so far is in the store
    /// (throws as record() does if the store cannot take them). Otherwise
    /// there is nothing to wait for.
    void flush();

    [[nodiscard]] Keys& keys() noexcept { return keys_; }
    [[nodiscard]] Sink& sink() noexcept { return sink_; }
    [[nodiscard]] std::uint64_t head_seq();
    [[nodiscard]] std::size_t queue_depth();
    /// Why audited operations are being refused now, "" if they are not:
    /// the store did not take the last spooled batch, or the last event
    /// could not be appended to the spool (a full disk). Cleared by the
    /// next success.
    [[nodiscard]] std::string write_error();

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
        // Spooled events: when each was recorded, and the spool offset after the last.
        std::vector<UnixTime> times;
        std::string spool_id;
        std::uint64_t spool_end = 0;
    };

    /// Writes batches while `state` (the caller's) is not done and nobody
    /// else is writing; `lock` holds mutex_ on entry and on return.
    void lead(std::unique_lock<std::mutex>& lock, const std::shared_ptr<BatchState>& state);
    void write(Batch& batch);
    void recover_spools();
    void ingest_loop();
    /// Writes what is spooled but not yet stored; `lock` holds mutex_.
    void ingest(std::unique_lock<std::mutex>& lock);

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

    // Spooled mode (all under mutex_ but the thread).
    std::optional<SpoolFile> spool_;
    std::string spool_series_;  // this writer's spools: <series>-<number>
    std::uint32_t spool_number_ = 0;
    std::vector<SpoolFile> retired_;  // rotated out, last batch not yet stored
    std::optional<Batch> retry_;      // the batch the store refused, tried first
    std::thread ingester_;
    std::condition_variable ingest_wake_;
    std::condition_variable ingested_;
    bool flush_requested_ = false;
    std::uint64_t submitted_ = 0;  // events spooled
    std::uint64_t stored_ = 0;     // of those, events in the store
    std::uint64_t attempts_ = 0;   // ingestion attempts
    std::string ingest_error_;     // the last attempt's failure ("" if it worked)
    std::string spool_error_;      // the last spool append's failure ("" if it worked)
    bool ingest_locked_ = false;
};

}  // namespace kw::core::audit
