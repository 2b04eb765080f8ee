#pragma once
// Whole-buffer reads and writes on a blocking socket, for both ends of the
// local protocol. Each returns false when the peer went away or the socket
// failed (errno says why; 0 after a clean end of stream).
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

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

enum class FrameRead { ok, closed, malformed };

/// Reads one frame (u32 big-endian length, then that many bytes) into
/// `out`, usually with a single recv(): both ends send a frame whole and
/// wait for the answer before sending again, so one read normally holds it
/// all. Bytes past the frame mean the peer broke that rule: `malformed`.
/// `closed`: end of stream or a socket error (errno says which).
[[nodiscard]] inline FrameRead read_frame(int fd, std::vector<std::uint8_t>& out, std::uint32_t min_len,
                                          std::uint32_t max_len) {
    constexpr std::size_t kFirst = 4096;
    out.resize(kFirst);
    std::size_t got = 0;
    while (got < 4) {
        const ssize_t n = ::recv(fd, out.data() + got, kFirst - got, 0);
        if (n > 0) {
            got += static_cast<std::size_t>(n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            if (n == 0) errno = 0;
            return FrameRead::closed;
        }
    }
    const std::uint32_t len =
        (std::uint32_t{out[0]} << 24) | (std::uint32_t{out[1]} << 16) | (std::uint32_t{out[2]} << 8) | out[3];
    if (len < min_len || len > max_len || got > 4 + std::size_t{len}) return FrameRead::malformed;
    out.resize(4 + std::size_t{len});
    if (got < out.size() && !read_all(fd, out.data() + got, out.size() - got)) return FrameRead::closed;
    out.erase(out.begin(), out.begin() + 4);
    return FrameRead::ok;
}

}  // namespace kw::wire
