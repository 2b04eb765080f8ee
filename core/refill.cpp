#include "core/refill.hpp"

#include <charconv>
#include <ctime>

namespace kw::core {
namespace {

std::optional<std::int64_t> number(std::string_view s) {
    std::int64_t v = 0;
    const auto* end = s.data() + s.size();
    auto [p, ec] = std::from_chars(s.data(), end, v);
    if (ec != std::errc() || p != end) return std::nullopt;
    return v;
}

// 00:00 UTC on `day` of the month `months_ahead` after the one holding `t`.
UnixTime month_day(UnixTime t, int months_ahead, int day) {
    const std::time_t tt = t;
    std::tm tm{};
    gmtime_r(&tt, &tm);
    tm.tm_mon += months_ahead;  // timegm normalises month 12 into the next year
    tm.tm_mday = day;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = 0;
    return timegm(&tm);
}

}  // namespace

std::optional<RefillSchedule> RefillSchedule::parse(std::string_view text) {
    RefillSchedule s;
    if (text == "daily") {
        s.kind = Kind::daily;
        return s;
    }
    if (text == "monthly") {
        s.kind = Kind::monthly;
        return s;
    }
    if (text.starts_with("monthly:")) {
        auto d = number(text.substr(8));
        // Up to 28, so every month has the day.
        if (!d || *d < 1 || *d > 28) return std::nullopt;
        s.kind = Kind::monthly;
        s.day = static_cast<int>(*d);
        return s;
    }
    std::optional<std::int64_t> secs =
        text.starts_with("every:") ? number(text.substr(6)) : parse_duration(std::string(text));
    if (!secs || *secs <= 0) return std::nullopt;
    s.kind = Kind::every;
    s.seconds = *secs;
    return s;
}

std::string RefillSchedule::to_string() const {
    switch (kind) {
        case Kind::daily: return "daily";
        case Kind::monthly: return "monthly:" + std::to_string(day);
        case Kind::every: break;
    }
    return "every:" + std::to_string(seconds);
}

UnixTime RefillSchedule::next_after(UnixTime t, UnixTime anchor) const {
    constexpr std::int64_t kDay = 86400;
    switch (kind) {
        case Kind::daily: return (t >= 0 ? t / kDay : (t - kDay + 1) / kDay) * kDay + kDay;
        case Kind::monthly: {
            const UnixTime this_month = month_day(t, 0, day);
            return this_month > t ? this_month : month_day(t, 1, day);
        }
        case Kind::every: break;
    }
    if (t < anchor) return anchor + seconds;
    return anchor + ((t - anchor) / seconds + 1) * seconds;
}

}  // namespace kw::core
