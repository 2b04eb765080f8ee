#pragma once
// Use counts of unlimited API tokens, batched.
//
// A token without max_uses cannot be overspent, so counting its uses need
// not be a store write per verification: add() counts in memory, and a
// flusher thread writes everything counted in one transaction every
// `interval` (and flush() / the destructor do so at shutdown).
//
// Crash bound: a kill -9 loses at most the use counts and last-used times of
// unlimited tokens counted since the last successful flush, i.e. about one
// interval (longer only while flushes fail, e.g. the store is locked for
// longer than its busy timeout; counts are kept and retried). Tokens with
// credits (max_uses, refill) never come here: the store decrements them
// atomically on every use, so they never overspend.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "core/store/store.hpp"

namespace kw::core::tokens {

class UsageAccumulator {
public:
    /// Starts the flusher thread. `interval` must be positive.
    UsageAccumulator(Store& store, std::chrono::milliseconds interval);
    ~UsageAccumulator();  // stops the flusher, then flushes what is left (errors swallowed)
    UsageAccumulator(const UsageAccumulator&) = delete;
    UsageAccumulator& operator=(const UsageAccumulator&) = delete;

    /// Counts one use of `kid` at `at`.
    void add(std::string_view kid, UnixTime at);
    /// Writes everything counted so far in one transaction. On failure the
    /// counts are kept for the next flush and the error is rethrown.
    void flush();
    /// The token's stored record plus the uses counted here and not yet
    /// flushed: what the store will hold after the next flush. Never counts
    /// a use twice or misses one while a flush is running.
    [[nodiscard]] std::optional<TokenRecord> record(std::string_view kid);
    /// Flushes that failed since start (the counts were kept and retried).
    [[nodiscard]] std::uint64_t failed_flushes() const;

private:
    void run();

    Store& store_;
    const std::chrono::milliseconds interval_;

    std::mutex flush_mutex_;  // one flush at a time; record() reads the store under it
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::map<std::string, TokenUsage, std::less<>> pending_;
    std::uint64_t failed_flushes_ = 0;
    std::thread flusher_;
};

}  // namespace kw::core::tokens
