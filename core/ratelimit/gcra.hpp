#pragma once
// GCRA (generic cell rate algorithm) rate limiter: `limit` requests per
// `period` with bursts up to `burst`, exact within one process. One theoretical
// arrival time per key; no timers, no background threads. Limits can change
// at run time (set_default, set_limit) and apply from the next request.
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace kw::core::ratelimit {

struct Limit {
    std::int64_t limit = 100;  // requests per period
    std::int64_t period_ms = 1000;
    std::int64_t burst = 100;  // how many may arrive at once
};

struct Decision {
    bool allowed = true;
    std::int64_t limit = 0;
    std::int64_t remaining = 0;
    std::int64_t reset_ms = 0;        // until the bucket is full again
    std::int64_t retry_after_ms = 0;  // when denied
};

class Gcra {
public:
    using Clock = std::function<std::int64_t()>;  // monotonic milliseconds
    explicit Gcra(Limit default_limit, Clock clock = {});

    /// Takes `cost` from `key`'s allowance, or denies without taking anything.
    Decision take(const std::string& key, std::int64_t cost = 1);
    /// What take() would answer, without taking anything.
    [[nodiscard]] Decision peek(const std::string& key, std::int64_t cost = 1);
    void set_default(Limit limit);
    void set_limit(const std::string& key, Limit limit);
    /// Back to the default for `key` (a full allowance, as after set_limit).
    void remove_limit(const std::string& key);
    [[nodiscard]] Limit default_limit() const;
    [[nodiscard]] Limit limit_for(const std::string& key) const;
    /// Keys whose allowance is not full (others are forgotten now and then).
    [[nodiscard]] std::size_t tracked() const;

    static constexpr std::uint64_t prune_every = 4096;  // takes between sweeps of full keys

private:
    Decision decide(const std::string& key, std::int64_t cost, bool commit);
    std::int64_t now() const;
    mutable std::mutex mutex_;
    Limit default_;
    std::unordered_map<std::string, Limit> limits_;
    std::unordered_map<std::string, std::int64_t> tat_;  // theoretical arrival time, microseconds
    std::uint64_t commits_ = 0;
    Clock clock_;
};

}  // namespace kw::core::ratelimit
