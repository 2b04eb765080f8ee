#include "core/store/sqlite/wal_checkpointer.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/store/sqlite/database.hpp"
#include "core/thread_name.hpp"

namespace kw::core::sqlite {

WalCheckpointer::WalCheckpointer(std::string path, std::chrono::milliseconds interval)
    : path_(std::move(path)), interval_(interval) {
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

void WalCheckpointer::run() {
    // Below the request threads (see the header): SCHED_IDLE needs no
    // privilege; nice 10 is the fallback.
    const sched_param idle{};
    if (::sched_setscheduler(0, SCHED_IDLE, &idle) != 0) {
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
    }
    std::unique_ptr<Database> db;
    bool stop = false;
    while (!stop) {
        {
            std::unique_lock lock(mutex_);
            stop = wake_.wait_for(lock, interval_, [&] { return stopping_; });
        }
        try {
            // Opened lazily: the store file exists by the time work arrives.
            if (!db) db = std::make_unique<Database>(path_, 0);
            // The PRAGMA, not sqlite3_wal_checkpoint_v2(): a connection that
            // has not read the database yet does not know it is in WAL mode
            // and would silently do nothing. Another connection checkpointing
            // at the same time is reported in a result row, not as an error.
            db->exec("PRAGMA wal_checkpoint(PASSIVE)");
        } catch (...) {
            std::lock_guard lock(mutex_);
            ++failures_;
        }
    }
}

}  // namespace kw::core::sqlite
