#pragma once
// Time as the core sees it: whole seconds since the Unix epoch, from a Clock
// that is passed in, so tests can move time by hand.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kw::core {

using UnixTime = std::int64_t;

class Clock {
public:
    virtual ~Clock() = default;
    [[nodiscard]] virtual UnixTime now() const = 0;
};

class SystemClock final : public Clock {
public:
    [[nodiscard]] UnixTime now() const override;
};

class FakeClock final : public Clock {
public:
    explicit FakeClock(UnixTime start) : now_(start) {}
    [[nodiscard]] UnixTime now() const override { return now_; }
    void advance(std::int64_t seconds) { now_ += seconds; }
    void set(UnixTime t) { now_ = t; }

private:
    UnixTime now_;
};

/// "2026-11-25T13:37:00Z".
[[nodiscard]] std::string format_time(UnixTime t);
/// Parses "30d", "12h", "15m", "90s", "2w" or a bare number of seconds;
/// nullopt otherwise, including values that would overflow 64-bit seconds.
[[nodiscard]] std::optional<std::int64_t> parse_duration(std::string_view text);
/// "10d", "12h", "15m", "90s": the largest unit that divides evenly.
[[nodiscard]] std::string format_duration(std::int64_t seconds);

}  // namespace kw::core
