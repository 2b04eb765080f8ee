#include "server/deadlines.hpp"

#include <sys/socket.h>

namespace kw::server {

void Deadline::cut_if_late(Clock::time_point now) noexcept {
    if (now.time_since_epoch().count() < at_.load(std::memory_order_relaxed)) return;
    at_.store(Clock::time_point::max().time_since_epoch().count(), std::memory_order_relaxed);
    cut_.store(true, std::memory_order_release);
    // The descriptor stays open until the connection's owner closes it, and
    // the sweep holds the owner alive meanwhile: this cannot hit a reused fd.
    ::shutdown(fd_, SHUT_RDWR);
}

DeadlineSweeper::DeadlineSweeper(boost::asio::io_context& io, std::chrono::milliseconds every)
    : timer_(io), every_(every) {}

void DeadlineSweeper::start() {
    timer_.expires_after(every_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;  // cancelled: the server is stopping
        sweep();
        start();
    });
}

void DeadlineSweeper::watch(const std::shared_ptr<Deadline>& d) {
    std::lock_guard lock(mutex_);
    watched_.push_back(d);
}

void DeadlineSweeper::sweep() {
    std::vector<std::shared_ptr<Deadline>> alive;
    {
        std::lock_guard lock(mutex_);
        std::erase_if(watched_, [](const std::weak_ptr<Deadline>& w) { return w.expired(); });
        alive.reserve(watched_.size());
        for (const auto& w : watched_) {
            if (auto d = w.lock()) alive.push_back(std::move(d));
        }
    }
    const auto now = Deadline::Clock::now();
    for (const auto& d : alive) d->cut_if_late(now);
}

}  // namespace kw::server
