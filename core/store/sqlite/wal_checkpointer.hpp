#pragma once
// Background WAL checkpoints for a long-running process (keywardend).
//
// By default SQLite checkpoints inside the COMMIT that pushes the WAL past
// 1,000 pages, and with synchronous=NORMAL that checkpoint fsyncs: the
// committing thread (for keywardend, the audit leader every verification
// waits on) stalls for milliseconds. Connections opened with
// auto_checkpoint=false leave that to this thread, which runs PASSIVE
// checkpoints on a connection of its own: they never block writers, and a
// commit's durability does not depend on them (a committed transaction is in
// the WAL either way).
//
// PASSIVE alone does not bound the WAL under sustained load: SQLite only
// starts the WAL over when a writer finds every frame already copied, and a
// writer committing every few milliseconds (the audit ingester) always gets
// there first. The WAL grew by about 34 MB a second at 47,000 verifications
// a second, without end. The bound is therefore kept by the writer itself
// (Database::restart_wal_past on the ingester's connection); these rounds
// copy pages ahead of it, so its RESTART finds little left to copy.
//
// The thread runs at SCHED_IDLE (nice 10 where that is refused): it takes a
// CPU only when no request thread wants one, and a request thread waking up
// takes it back at once. At nice 10 a 10 ms round still cost requests: in a
// 6 s run at 23,000 requests a second, rounds covered 6% of the time and 40%
// of the requests slower than 1 ms fell into them; at SCHED_IDLE 13 to 21%.
// At full load the rounds may not run at all; the writer's RESTART then
// does all the copying, which only delays the audit ingester.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace kw::core::sqlite {

class WalCheckpointer {
public:
    WalCheckpointer(std::string path, std::chrono::milliseconds interval);
    ~WalCheckpointer();  // stops the thread after one last checkpoint
    WalCheckpointer(const WalCheckpointer&) = delete;
    WalCheckpointer& operator=(const WalCheckpointer&) = delete;

    /// Checkpoints that failed (the WAL then grows until one succeeds).
    [[nodiscard]] std::uint64_t failures() const;

private:
    void run();

    std::string path_;
    std::chrono::milliseconds interval_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::uint64_t failures_ = 0;
    std::thread thread_;
};

}  // namespace kw::core::sqlite
