#pragma once
// The local binary protocol listener (docs/local-protocol.md): a unix socket
// for the faces in client/ (PKCS#11 module, OpenSSL provider).
//
// One thread per connection, blocking I/O: the clients keep one connection
// per calling thread and wait for each answer, so a thread that sleeps in
// read() costs nothing and answers with no hand-off. Connections beyond
// `max_connections` are closed at once.
#include <atomic>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "server/app.hpp"

namespace kw::server::local {

struct LocalOptions {
    std::string socket_path;
    std::optional<gid_t> gid;  // members of this group may connect (0660); else 0600
    std::size_t max_connections = 256;
};

class LocalServer {
public:
    LocalServer(App& app, LocalOptions options);
    ~LocalServer();
    LocalServer(const LocalServer&) = delete;
    LocalServer& operator=(const LocalServer&) = delete;

    /// Binds the socket (0600, or 0660 for `gid`) and starts accepting.
    /// Throws on bind failure or when the group cannot be given access.
    void start();
    /// Stops accepting, lets each connection finish the request it is in,
    /// then closes every connection and removes the socket file.
    void stop();

private:
    struct Connection {
        int fd = -1;
        std::thread thread;
        std::atomic<bool> finished{false};
    };
    void accept_loop();
    void serve(Connection& c);
    void reap_finished();

    App& app_;
    LocalOptions options_;
    int listen_fd_ = -1;
    std::thread acceptor_;
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    std::list<Connection> connections_;
};

}  // namespace kw::server::local
