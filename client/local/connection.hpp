#pragma once
// One blocking connection to keywardend's local socket.
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace kw::client {

/// The connection broke (daemon gone, restarted, or answered garbage). The
/// caller may reconnect; nothing is known about the request in flight.
class ConnectionError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Connection {
public:
    /// Connects to the unix socket. Throws ConnectionError.
    explicit Connection(const std::string& socket_path);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Sends one request message and returns the answer message (both
    /// without length prefix). Throws ConnectionError.
    [[nodiscard]] std::vector<std::uint8_t> call(std::span<const std::uint8_t> request);

    /// Forgets the descriptor without closing it. Used in a forked child for
    /// connections still checked out by parent threads that do not exist
    /// there; closing would be harmless but the object may be in use.
    void abandon() noexcept { fd_ = -1; }

private:
    int fd_ = -1;
};

}  // namespace kw::client
