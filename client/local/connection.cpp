#include "client/local/connection.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/wire/io.hpp"
#include "core/wire/protocol.hpp"
#include "core/wire/spin.hpp"

namespace kw::client {
namespace {

[[noreturn]] void lost() {
    throw ConnectionError(errno == 0 ? "keywardend closed the connection"
                                     : std::string("keywardend connection lost: ") + std::strerror(errno));
}

}  // namespace

Connection::Connection(const std::string& socket_path) {
    sockaddr_un addr{};
    if (socket_path.size() >= sizeof addr.sun_path) throw ConnectionError("socket path too long: " + socket_path);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
    // CLOEXEC: an exec'd child must not inherit an authenticated connection.
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw ConnectionError(std::string("socket: ") + std::strerror(errno));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int e = errno;
        ::close(fd_);
        fd_ = -1;
        throw ConnectionError("cannot reach keywardend at " + socket_path + ": " + std::strerror(e));
    }
}

Connection::~Connection() {
    if (fd_ >= 0) ::close(fd_);
}

std::vector<std::uint8_t> Connection::call(std::span<const std::uint8_t> request) {
    if (fd_ < 0) throw ConnectionError("connection closed");
    // Prefix and message in one send: one syscall and one wake-up of the daemon.
    std::vector<std::uint8_t> frame(4 + request.size());
    const auto n = static_cast<std::uint32_t>(request.size());
    frame[0] = static_cast<std::uint8_t>(n >> 24);
    frame[1] = static_cast<std::uint8_t>(n >> 16);
    frame[2] = static_cast<std::uint8_t>(n >> 8);
    frame[3] = static_cast<std::uint8_t>(n);
    std::memcpy(frame.data() + 4, request.data(), request.size());
    if (!wire::write_all(fd_, frame.data(), frame.size())) lost();
    wire::spin_until_readable(fd_, wire::kClientSpin);
    std::vector<std::uint8_t> answer;
    switch (wire::read_frame(fd_, answer, 2, wire::kMaxFrame)) {
        case wire::FrameRead::ok: return answer;
        case wire::FrameRead::malformed: throw ConnectionError("keywardend sent a malformed frame");
        case wire::FrameRead::closed: break;
    }
    lost();
}

}  // namespace kw::client
