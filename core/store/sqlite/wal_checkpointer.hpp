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
