#pragma once
// When failed token verifications become an alert (verify_failed_spike).
//
// Two triggers, each firing at most once per minute:
//   - count: more than `per_minute` failures in the current minute;
//   - unusual: MALFORMED + NOT_FOUND answers in the current minute above
//     `factor` times their usual rate, once the usual rate is known. The
//     usual rate is an exponentially weighted mean of past minutes (weight
//     `alpha` for the newest), so a service whose clients always send some
//     garbage is not paged for it, and one that suddenly sees ten times
//     more unknown tokens than usual is, even below the absolute count.
//     `min_count` keeps a quiet service (usual rate near zero) from paging
//     on a handful of typos.
// Rate-limit and exhausted-credit answers are not failures here: they are
// the limits working, with their own metrics and alerts.
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace kw::core::alerts {

struct SpikeOptions {
    std::int64_t per_minute = 100;    // count trigger
    double factor = 10;               // unusual trigger: this many times the usual rate...
    std::int64_t min_count = 20;      // ...and at least this many in the minute
    double alpha = 0.2;               // weight of the newest minute in the usual rate
    std::int64_t warmup_minutes = 3;  // minutes observed before the usual rate is trusted
};

struct Spike {
    enum class Trigger { count, unusual } trigger = Trigger::count;
    std::int64_t failures = 0;  // this minute, all counted codes
    std::int64_t unknown = 0;   // this minute, MALFORMED + NOT_FOUND
    double usual = 0;           // usual MALFORMED + NOT_FOUND per minute
    [[nodiscard]] std::string message() const;
};

class SpikeDetector {
public:
    using Clock = std::function<std::int64_t()>;  // unix seconds
    SpikeDetector(SpikeOptions options, Clock clock);

    /// Records one verification answer (its code as in the API, "VALID",
    /// "NOT_FOUND", ...); returns a spike when this answer crosses a trigger.
    [[nodiscard]] std::optional<Spike> record(std::string_view code);
    /// The usual MALFORMED + NOT_FOUND rate per minute (0 until warm).
    [[nodiscard]] double usual() const;

private:
    void roll(std::int64_t minute);

    SpikeOptions options_;
    Clock clock_;
    mutable std::mutex mutex_;
    std::int64_t minute_ = -1;
    std::int64_t failures_ = 0;
    std::int64_t unknown_ = 0;
    double usual_ = 0;
    std::int64_t observed_minutes_ = 0;
    bool count_fired_ = false;
    bool unusual_fired_ = false;
};

}  // namespace kw::core::alerts
