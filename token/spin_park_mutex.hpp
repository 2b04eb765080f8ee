#pragma once
// A mutex for many very short critical sections taken from a few threads.
//
// lock() spins for a bounded time while the holder is likely still running,
// then parks on a futex; unlock() makes a system call only when somebody is
// parked. A pthread mutex parks a waiter at the first collision, so when
// critical sections last well under a microsecond (SoftHSM takes about forty
// per HMAC) every collision costs a sleep and a wake-up, each longer than the
// section it waited for. The spin is bounded, so a holder that was preempted
// or that blocks on I/O costs the waiter a short spin and then nothing.
//
// Not recursive. Satisfies Lockable (works with std::lock_guard).
#include <atomic>
#include <cstdint>

namespace kw::token {

class SpinParkMutex {
public:
    SpinParkMutex() = default;
    SpinParkMutex(const SpinParkMutex&) = delete;
    SpinParkMutex& operator=(const SpinParkMutex&) = delete;

    void lock() noexcept;
    [[nodiscard]] bool try_lock() noexcept;
    void unlock() noexcept;

    /// How many times a lock() gave up spinning and parked, over all
    /// SpinParkMutex objects in the process (for tests and diagnostics).
    [[nodiscard]] static std::uint64_t parks() noexcept;

private:
    // 0 free, 1 held, 2 held and somebody may be parked (Drepper, "Futexes
    // are tricky", mutex 3).
    std::atomic<std::uint32_t> state_{0};
};

}  // namespace kw::token
