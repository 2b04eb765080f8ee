#pragma once
// When a credit-limited API token's allowance is restored.
//
//   every N seconds  a fixed cadence from the moment the token was issued;
//   daily            at 00:00 UTC every day;
//   monthly          at 00:00 UTC on day `day` (1 to 28) of every month.
//
// Written as "86400s"-style durations ("12h", "7d") or "daily", "monthly",
// "monthly:15" in the admin API, hsm-keytool and the store.
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"

namespace kw::core {

struct RefillSchedule {
    enum class Kind { every, daily, monthly };
    Kind kind = Kind::every;
    std::int64_t seconds = 0;  // every: the period
    int day = 1;               // monthly: the day of the month

    /// "daily", "monthly", "monthly:DAY" or a duration; nullopt if none of those.
    [[nodiscard]] static std::optional<RefillSchedule> parse(std::string_view text);
    /// The stored form: "daily", "monthly:DAY" or "every:SECONDS".
    [[nodiscard]] std::string to_string() const;
    /// The first refill after `t`. `anchor` (when the token was issued) fixes
    /// the phase of an `every` cadence.
    [[nodiscard]] UnixTime next_after(UnixTime t, UnixTime anchor) const;
};

}  // namespace kw::core
