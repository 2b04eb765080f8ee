#pragma once
// Request deadlines for every HTTP connection, enforced by one sweep.
//
// Why not a timer per operation (beast::basic_stream): arming and cancelling
// a timer on every read and write takes the reactor's lock twice per request
// and often re-arms its timerfd, about 3 us of a 45 us verification here
// (docs/performance.md). Instead each connection writes its deadline into an
// atomic before it waits, and one timer checks them all every 250 ms: a
// late connection is shut down (shutdown(2) on its descriptor, which is
// safe from any thread), which completes its pending read or write with an
// error, and its own handler then ends it. Deadlines are thus kept to
// within a quarter of a second.
// clang-format off
#include <utility>  // Boost 1.74 asio uses std::exchange without including <utility>
#include <boost/asio.hpp>
// clang-format on
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

namespace kw::server {

/// One watched connection: its deadline and how to cut it.
class Deadline {
public:
    using Clock = std::chrono::steady_clock;
    explicit Deadline(int native_handle) : fd_(native_handle) {}
    /// From now on the connection must make progress within `timeout`.
    void arm(std::chrono::seconds timeout) noexcept {
        at_.store((Clock::now() + timeout).time_since_epoch().count(), std::memory_order_relaxed);
    }
    /// No deadline while the connection is not waiting on its peer (its
    /// request is being handled, however long that takes).
    void disarm() noexcept {
        at_.store(Clock::time_point::max().time_since_epoch().count(), std::memory_order_relaxed);
    }
    /// Called by the sweep: shuts the connection down if it is late.
    void cut_if_late(Clock::time_point now) noexcept;
    /// True once the sweep has shut the connection down.
    [[nodiscard]] bool was_cut() const noexcept { return cut_.load(std::memory_order_acquire); }
    /// Whether the connection waits for a next request of which it has read
    /// nothing yet (a keep-alive connection between requests).
    void set_idle(bool idle) noexcept { idle_.store(idle, std::memory_order_release); }
    /// At shutdown: closes the connection if it is idle and nothing of a
    /// next request has arrived either; true if it did.
    bool close_if_idle() noexcept;
    /// True once close_if_idle() has closed the connection.
    [[nodiscard]] bool was_drained() const noexcept { return drained_.load(std::memory_order_acquire); }

private:
    int fd_;
    std::atomic<bool> cut_{false};
    std::atomic<bool> idle_{false};
    std::atomic<bool> drained_{false};
    std::atomic<Clock::rep> at_{Clock::time_point::max().time_since_epoch().count()};
};

class DeadlineSweeper {
public:
    explicit DeadlineSweeper(boost::asio::io_context& io,
                             std::chrono::milliseconds every = std::chrono::milliseconds(250));
    /// Starts the periodic sweep (on the io_context's threads).
    void start();
    /// Watches `d` for as long as it lives.
    void watch(const std::shared_ptr<Deadline>& d);
    /// At shutdown: closes every idle connection (Deadline::close_if_idle)
    /// and returns how many connections are still open.
    std::size_t close_idle();

private:
    void sweep();
    std::vector<std::shared_ptr<Deadline>> alive();

    boost::asio::steady_timer timer_;
    std::chrono::milliseconds every_;
    std::mutex mutex_;
    std::vector<std::weak_ptr<Deadline>> watched_;
};

}  // namespace kw::server
