#pragma once
// HTTP/1.1 on Boost.Beast: one listener on TCP, one on a unix socket, a fixed
// pool of threads running one io_context. Keep-alive; limits on header and
// body size; a deadline per request (slow clients, slowloris-style headers,
// are cut off within request_timeout_s + 0.25 s: server/deadlines.hpp).
// stop() stops accepting and lets in-flight requests finish.
// clang-format off
#include <utility>  // Boost 1.74 asio uses std::exchange without including <utility>
#include <boost/asio.hpp>
// clang-format on
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/app.hpp"
#include "server/deadlines.hpp"

namespace kw::server {

struct HttpOptions {
    std::string listen = "127.0.0.1:8443";  // "" disables TCP
    std::string unix_socket;                // "" disables the unix socket
    std::optional<gid_t> unix_socket_gid;   // members may connect (0660); else 0600
    std::size_t threads = 4;
    std::size_t body_limit = 1 << 20;  // bytes
    std::size_t header_limit = std::size_t{16} * 1024;
    int request_timeout_s = 10;
    // How long an idle worker polls for work (yielding between polls)
    // before it blocks; zero blocks at once. See HttpServer::work().
    std::chrono::microseconds spin{50};
};

class HttpServer {
public:
    HttpServer(App& app, HttpOptions options);
    ~HttpServer();
    /// Binds and starts the threads. Throws on a bad address.
    void start();
    /// Stops accepting; returns when in-flight requests are answered (or after `grace_s`).
    void stop(int grace_s = 10);
    [[nodiscard]] unsigned short tcp_port() const noexcept { return tcp_port_; }
    [[nodiscard]] std::size_t in_flight() const noexcept;

private:
    void work();

    App& app_;
    HttpOptions options_;
    boost::asio::io_context io_;
    DeadlineSweeper sweeper_{io_};
    std::unique_ptr<boost::asio::ip::tcp::acceptor> tcp_;
    std::unique_ptr<boost::asio::local::stream_protocol::acceptor> unix_;
    std::vector<std::thread> threads_;
    std::shared_ptr<std::atomic<std::size_t>> in_flight_ = std::make_shared<std::atomic<std::size_t>>(0);
    unsigned short tcp_port_ = 0;
};

}  // namespace kw::server
