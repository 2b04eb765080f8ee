#include "core/ratelimit/gcra.hpp"

#include <algorithm>

namespace kw::core::ratelimit {

Gcra::Gcra(Limit default_limit, Clock clock) : default_(default_limit), clock_(std::move(clock)) {}

std::int64_t Gcra::now() const {
    if (clock_) return clock_() * 1000;
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void Gcra::set_default(Limit limit) {
    std::lock_guard lock(mutex_);
    default_ = limit;
    // As with set_limit: the keys under the default start again with a full
    // allowance of the new one (their state was measured in the old one's
    // emission interval, which may be far longer).
    std::erase_if(tat_, [this](const auto& e) { return !limits_.contains(e.first); });
}

void Gcra::set_limit(const std::string& key, Limit limit) {
    std::lock_guard lock(mutex_);
    limits_[key] = limit;
    tat_.erase(key);  // a new limit starts with a full allowance
}

void Gcra::remove_limit(const std::string& key) {
    std::lock_guard lock(mutex_);
    limits_.erase(key);
    tat_.erase(key);
}

Limit Gcra::default_limit() const {
    std::lock_guard lock(mutex_);
    return default_;
}

Limit Gcra::limit_for(const std::string& key) const {
    std::lock_guard lock(mutex_);
    auto it = limits_.find(key);
    return it != limits_.end() ? it->second : default_;
}

Decision Gcra::take(const std::string& key, std::int64_t cost) {
    return decide(key, cost, true);
}
std::size_t Gcra::tracked() const {
    std::lock_guard lock(mutex_);
    return tat_.size();
}

Decision Gcra::peek(const std::string& key, std::int64_t cost) {
    return decide(key, cost, false);
}

Decision Gcra::decide(const std::string& key, std::int64_t cost, bool commit) {
    std::lock_guard lock(mutex_);
    auto lit = limits_.find(key);
    const Limit l = lit != limits_.end() ? lit->second : default_;
    const std::int64_t t = now();
    // Emission interval: the time one request "costs"; the bucket holds burst of them.
    const std::int64_t interval = std::max<std::int64_t>(1, l.period_ms * 1000 / std::max<std::int64_t>(1, l.limit));
    const std::int64_t capacity = interval * std::max<std::int64_t>(1, l.burst);
    auto found = tat_.find(key);
    const std::int64_t tat = found != tat_.end() ? found->second : 0;
    const std::int64_t base = std::max(tat, t);
    const std::int64_t new_tat = base + interval * cost;
    const std::int64_t allow_at = new_tat - capacity;
    Decision d;
    d.limit = l.limit;
    if (t < allow_at) {
        d.allowed = false;
        d.retry_after_ms = (allow_at - t + 999) / 1000;
        d.remaining = 0;
        d.reset_ms = (base - t + 999) / 1000;
        return d;
    }
    if (commit) {
        tat_[key] = new_tat;
        // A key whose bucket has refilled is the same as one never seen:
        // forgetting those now and then bounds the map by the keys active
        // within one period, however many names callers make up.
        if (++commits_ % prune_every == 0) std::erase_if(tat_, [t](const auto& e) { return e.second <= t; });
    }
    d.remaining = std::max<std::int64_t>(0, (t - (new_tat - capacity)) / interval);
    d.reset_ms = (new_tat - t + 999) / 1000;
    return d;
}

}  // namespace kw::core::ratelimit
