#include "core/ratelimit/denial_sampler.hpp"

namespace kw::core::ratelimit {
namespace {
// Above this many keys, idle ones (window over, nothing pending) are dropped,
// so a flood of distinct keys cannot grow the map without bound.
constexpr std::size_t kPruneAbove = 10000;
}  // namespace

DenialSampler::DenialSampler(SamplingOptions options, Clock clock) : options_(options), clock_(std::move(clock)) {
    if (options_.first < 0) options_.first = 0;
    if (options_.every < 1) options_.every = 1;
    if (options_.window_ms < 1) options_.window_ms = 1;
}

std::int64_t DenialSampler::now() const {
    if (clock_) return clock_();
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void DenialSampler::prune(std::int64_t t) {
    for (auto it = keys_.begin(); it != keys_.end();) {
        if (it->second.suppressed == 0 && t - it->second.window_start >= options_.window_ms) {
            it = keys_.erase(it);
        } else {
            ++it;
        }
    }
}

DenialSampler::Decision DenialSampler::deny(const std::string& key) {
    const std::int64_t t = now();
    std::lock_guard lock(mutex_);
    if (keys_.size() > kPruneAbove) prune(t);
    auto [it, inserted] = keys_.try_emplace(key, State{t, 0, 0});
    State& s = it->second;
    if (t - s.window_start >= options_.window_ms) {
        s.window_start = t;
        s.in_window = 0;
    }
    const std::int64_t n = ++s.in_window;  // this denial is the n-th of the window
    const bool audit = n <= options_.first || (n - options_.first) % options_.every == 0;
    if (!audit) {
        ++s.suppressed;
        return {};
    }
    Decision d{true, s.suppressed};
    s.suppressed = 0;
    return d;
}

void DenialSampler::unreport(const std::string& key, const Decision& d) {
    if (!d.audit) return;
    std::lock_guard lock(mutex_);
    keys_[key].suppressed += d.suppressed + 1;
}

std::int64_t DenialSampler::pending(const std::string& key) const {
    std::lock_guard lock(mutex_);
    auto it = keys_.find(key);
    return it != keys_.end() ? it->second.suppressed : 0;
}

}  // namespace kw::core::ratelimit
