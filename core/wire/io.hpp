#pragma once
// Whole-buffer reads and writes on a blocking socket, for both ends of the
// local protocol. Each returns false when the peer went away or the socket
// failed (errno says why; 0 after a clean end of stream).
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace kw::wire {

[[nodiscard]] inline bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
        // MSG_NOSIGNAL: a vanished peer is an error to report, not SIGPIPE.
        const ssize_t put = ::send(fd, p, n, MSG_NOSIGNAL);
        if (put > 0) {
            p += put;
            n -= static_cast<std::size_t>(put);
        } else if (put < 0 && errno == EINTR) {
            continue;
        } else {
            return false;
        }
    }
    return true;
}

[[nodiscard]] inline bool read_all(int fd, std::uint8_t* p, std::size_t n) {
    while (n > 0) {
        const ssize_t got = ::read(fd, p, n);
        if (got > 0) {
            p += got;
            n -= static_cast<std::size_t>(got);
        } else if (got < 0 && errno == EINTR) {
            continue;
        } else {
            if (got == 0) errno = 0;
            return false;
        }
    }
    return true;
}

}  // namespace kw::wire
