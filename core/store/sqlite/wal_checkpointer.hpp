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
// there first. The WAL then grew by about 34 MB a second at 47,000
// verifications a second, without end, and every read had to search a
// growing WAL index. So when a round finds at least `restart_frames` frames
// in the WAL, it follows with a TRUNCATE checkpoint: that one waits (up to
// `restart_wait`) for the current writer to finish and holds new writers
// off while it copies the rest, then empties the WAL file. Only background
// writers wait on it (the audit ingester, the use-count flusher, admin
// changes); a request never commits, so none does.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace kw::core::sqlite {

class WalCheckpointer {
public:
    static constexpr std::int64_t kDefaultRestartFrames = 8192;  // 32 MiB of 4 KiB pages

    WalCheckpointer(std::string path, std::chrono::milliseconds interval,
                    std::int64_t restart_frames = kDefaultRestartFrames,
                    std::chrono::milliseconds restart_wait = std::chrono::milliseconds(2000));
    ~WalCheckpointer();  // stops the thread after one last checkpoint
    WalCheckpointer(const WalCheckpointer&) = delete;
    WalCheckpointer& operator=(const WalCheckpointer&) = delete;

    /// Checkpoints that failed (the WAL then grows until one succeeds).
    [[nodiscard]] std::uint64_t failures() const;
    /// TRUNCATE checkpoints that emptied the WAL.
    [[nodiscard]] std::uint64_t truncations() const;

private:
    void run();

    std::string path_;
    std::chrono::milliseconds interval_;
    std::int64_t restart_frames_;
    std::chrono::milliseconds restart_wait_;
    std::uint64_t truncations_ = 0;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::uint64_t failures_ = 0;
    std::thread thread_;
};

}  // namespace kw::core::sqlite
