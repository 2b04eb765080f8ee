#pragma once
// Which rate-limit denials are written to the audit log.
//
// A client hammering past its limit must not turn the audit log (one token
// MAC and one SQLite row per event) into the bottleneck, yet no denial may go
// unaccounted. Per key and per window: the first `first` denials are audited,
// after that one in `every`. Each audited denial carries the number of
// denials of that key suppressed since the previous audited one, so
// audited events + their suppressed counts + pending() = all denials.
// Metrics count every denial regardless.
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

namespace kw::core::ratelimit {

struct SamplingOptions {
    std::int64_t first = 10;   // audited in full per key per window
    std::int64_t every = 100;  // then one in this many
    std::int64_t window_ms = 60000;
};

class DenialSampler {
public:
    using Clock = std::function<std::int64_t()>;  // monotonic milliseconds
    explicit DenialSampler(SamplingOptions options = {}, Clock clock = {});

    struct Decision {
        bool audit = false;
        std::int64_t suppressed = 0;  // denials of this key not audited since the previous audited one
    };
    /// Records one denial of `key`; says whether to audit it.
    [[nodiscard]] Decision deny(const std::string& key);
    /// The audit write of a sampled denial failed: counts it and the
    /// suppressed ones it carried as pending again, so none is lost.
    void unreport(const std::string& key, const Decision& d);
    /// Denials of `key` suppressed and not yet reported by an audited one.
    [[nodiscard]] std::int64_t pending(const std::string& key) const;

private:
    struct State {
        std::int64_t window_start = 0;
        std::int64_t in_window = 0;
        std::int64_t suppressed = 0;
    };
    [[nodiscard]] std::int64_t now() const;
    void prune(std::int64_t now);

    SamplingOptions options_;
    Clock clock_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, State> keys_;
};

}  // namespace kw::core::ratelimit
