#include "server/deadlines.hpp"

#include <sys/ioctl.h>
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

bool Deadline::close_if_idle() noexcept {
    if (!idle_.load(std::memory_order_acquire)) return false;
    // Bytes waiting in the socket are a request the client sent before the
    // connection was closed: it is read and answered like any other.
    int waiting = 0;
    if (::ioctl(fd_, FIONREAD, &waiting) == 0 && waiting > 0) return false;
    // Only the reading side: the connection's read may already have taken a
    // whole request from the socket whose handler has not run yet (the flag
    // is still "idle"); that request is then still answered, and its answer
    // closes the connection. A connection that really waits sees its end.
    drained_.store(true, std::memory_order_release);
    ::shutdown(fd_, SHUT_RD);
    return true;
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

std::vector<std::shared_ptr<Deadline>> DeadlineSweeper::alive() {
    std::vector<std::shared_ptr<Deadline>> out;
    std::lock_guard lock(mutex_);
    std::erase_if(watched_, [](const std::weak_ptr<Deadline>& w) { return w.expired(); });
    out.reserve(watched_.size());
    for (const auto& w : watched_) {
        if (auto d = w.lock()) out.push_back(std::move(d));
    }
    return out;
}

void DeadlineSweeper::sweep() {
    const auto now = Deadline::Clock::now();
    for (const auto& d : alive()) d->cut_if_late(now);
}

std::size_t DeadlineSweeper::close_idle() {
    std::size_t open = 0;
    for (const auto& d : alive()) {
        if (!d->close_if_idle()) ++open;
    }
    return open;
}

}  // namespace kw::server
