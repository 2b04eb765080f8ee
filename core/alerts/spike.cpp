#include "core/alerts/spike.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kw::core::alerts {

std::string Spike::message() const {
    char buf[200];
    if (trigger == Trigger::count) {
        std::snprintf(buf, sizeof buf, "%lld failed token verifications this minute", static_cast<long long>(failures));
    } else {
        std::snprintf(buf, sizeof buf, "%lld unknown or malformed tokens this minute, usually %.1f a minute",
                      static_cast<long long>(unknown), usual);
    }
    return buf;
}

SpikeDetector::SpikeDetector(SpikeOptions options, Clock clock) : options_(options), clock_(std::move(clock)) {}

void SpikeDetector::roll(std::int64_t minute) {
    if (minute_ >= 0 && minute > minute_) {
        // The minute that ended, then every empty minute since, enter the mean.
        const double keep = 1 - options_.alpha;
        usual_ = options_.alpha * static_cast<double>(unknown_) + keep * usual_;
        const std::int64_t empty = std::min<std::int64_t>(minute - minute_ - 1, 1000);
        usual_ *= std::pow(keep, static_cast<double>(empty));
        observed_minutes_ += 1 + empty;
    }
    if (minute != minute_) {
        minute_ = minute;
        failures_ = unknown_ = 0;
        count_fired_ = unusual_fired_ = false;
    }
}

std::optional<Spike> SpikeDetector::record(std::string_view code) {
    const bool unknown = code == "NOT_FOUND" || code == "MALFORMED";
    const bool failure =
        unknown || code == "EXPIRED" || code == "REVOKED" || code == "DISABLED" || code == "INSUFFICIENT_SCOPE";
    if (!failure) return std::nullopt;
    std::lock_guard lock(mutex_);
    // A wall clock stepped back counts in the current minute.
    const std::int64_t minute = std::max(clock_() / 60, minute_);
    roll(minute);
    ++failures_;
    if (unknown) ++unknown_;
    Spike s{Spike::Trigger::count, failures_, unknown_, usual_};
    if (!count_fired_ && failures_ > options_.per_minute) {
        count_fired_ = true;
        return s;
    }
    if (unknown && !unusual_fired_ && observed_minutes_ >= options_.warmup_minutes && unknown_ >= options_.min_count &&
        static_cast<double>(unknown_) > options_.factor * usual_) {
        unusual_fired_ = true;
        s.trigger = Spike::Trigger::unusual;
        return s;
    }
    return std::nullopt;
}

double SpikeDetector::usual() const {
    std::lock_guard lock(mutex_);
    return observed_minutes_ >= options_.warmup_minutes ? usual_ : 0;
}

}  // namespace kw::core::alerts
