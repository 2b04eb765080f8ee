#include "core/store/sqlite/wal_checkpointer.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include "core/store/sqlite/database.hpp"
#include "core/thread_name.hpp"

namespace kw::core::sqlite {

namespace {

struct CheckpointResult {
    bool busy = false;        // could not finish (a writer or reader was in the way)
    std::int64_t frames = 0;  // frames in the WAL
};

CheckpointResult checkpoint(const Database& db, const char* pragma) {
    // The PRAGMA, not sqlite3_wal_checkpoint_v2(): a connection that has not
    // read the database yet does not know it is in WAL mode and would
    // silently do nothing. Another connection checkpointing at the same time
    // is reported in the result row, not as an error.
    Statement s(db, pragma);
    if (!s.step()) return {};
    return {s.integer(0) != 0, s.integer(1)};
}

}  // namespace

WalCheckpointer::WalCheckpointer(std::string path, std::chrono::milliseconds interval, std::int64_t restart_frames,
                                 std::chrono::milliseconds restart_wait)
    : path_(std::move(path)), interval_(interval), restart_frames_(restart_frames), restart_wait_(restart_wait) {
    thread_ = std::thread([this] {
        name_this_thread("kw-wal-ckpt");
        run();
    });
}

WalCheckpointer::~WalCheckpointer() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

std::uint64_t WalCheckpointer::failures() const {
    std::lock_guard lock(mutex_);
    return failures_;
}

std::uint64_t WalCheckpointer::truncations() const {
    std::lock_guard lock(mutex_);
    return truncations_;
}

void WalCheckpointer::run() {
    // Below the request threads: a checkpoint copies megabytes of pages in
    // one go, CPU a request thread would otherwise wait for. It needs
    // little CPU and nothing waits on it; at nice 10 it still runs on a
    // busy machine, with a smaller share than a request thread.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
    std::unique_ptr<Database> db;
    bool stop = false;
    while (!stop) {
        {
            std::unique_lock lock(mutex_);
            stop = wake_.wait_for(lock, interval_, [&] { return stopping_; });
        }
        try {
            // Opened lazily: the store file exists by the time work arrives.
            // Its busy timeout only matters to TRUNCATE: PASSIVE never waits.
            if (!db) db = std::make_unique<Database>(path_, static_cast<int>(restart_wait_.count()));
            const auto passive = checkpoint(*db, "PRAGMA wal_checkpoint(PASSIVE)");
            if (passive.frames >= restart_frames_ && !checkpoint(*db, "PRAGMA wal_checkpoint(TRUNCATE)").busy) {
                std::lock_guard lock(mutex_);
                ++truncations_;
            }
        } catch (...) {
            std::lock_guard lock(mutex_);
            ++failures_;
        }
    }
}

}  // namespace kw::core::sqlite
