#pragma once
// Short busy-polling before a blocking read, shared by both ends of the
// local protocol.
//
// A round trip on a unix socket costs little; waking a thread that sleeps in
// read() costs much more (a context switch, and on virtual machines an
// interrupt-window exit): measured here, polling for up to a few hundred
// microseconds took a PKCS#11 ECDSA signature from 3,580/s to 8,315/s, and
// yielding between polls took two signing threads from 7,700/s to 13,100/s
// (docs/performance.md). The budget bounds the CPU an idle peer can burn.
#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdint>

namespace kw::wire {

/// Returns when `fd` has data (or EOF, or an error) or after `budget`,
/// whichever comes first. The caller then reads as usual (blocking).
inline void spin_until_readable(int fd, std::chrono::microseconds budget) {
    const auto until = std::chrono::steady_clock::now() + budget;
    std::uint8_t probe = 0;
    do {
        const ssize_t got = ::recv(fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (got >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return;
        // Give the CPU to a runnable thread first: with more threads than
        // CPUs (two signing threads and the daemon's on two vCPUs) a poller
        // that does not yield holds the very core its answer needs.
        sched_yield();
    } while (std::chrono::steady_clock::now() < until);
}

/// How long each side polls: the client for the answer (the daemon's work
/// is an HSM call plus an audit commit: up to a few hundred microseconds),
/// the daemon for the next request (a signing client sends C_SignInit's
/// check and the signature back to back).
inline constexpr std::chrono::microseconds kClientSpin{200};
inline constexpr std::chrono::microseconds kServerSpin{100};

}  // namespace kw::wire
