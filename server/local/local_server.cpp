#include "server/local/local_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "core/thread_name.hpp"
#include "core/wire/io.hpp"
#include "core/wire/protocol.hpp"
#include "core/wire/spin.hpp"
#include "server/local/session.hpp"
#include "server/socket_access.hpp"

namespace kw::server::local {
LocalServer::LocalServer(App& app, LocalOptions options) : app_(app), options_(std::move(options)) {}

LocalServer::~LocalServer() {
    stop();
}

void LocalServer::start() {
    sockaddr_un addr{};
    if (options_.socket_path.size() >= sizeof addr.sun_path) {
        throw std::runtime_error("local socket path is too long: " + options_.socket_path);
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, options_.socket_path.data(), options_.socket_path.size());
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
    std::filesystem::remove(options_.socket_path);
    // 0600 from the first moment: the umask applies while bind creates the
    // file. A group is given access before listen(), so no one connects early.
    const mode_t old = ::umask(0177);
    const int rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    const int bind_errno = errno;
    ::umask(old);
    auto give_up = [this] {
        ::close(listen_fd_);
        listen_fd_ = -1;
    };
    if (rc == 0 && options_.gid) {
        try {
            share_socket_with_group(options_.socket_path, *options_.gid);
        } catch (...) {
            give_up();
            throw;
        }
    }
    if (rc != 0 || ::listen(listen_fd_, 128) != 0) {
        const int e = rc != 0 ? bind_errno : errno;
        give_up();
        throw std::system_error(e, std::generic_category(), "local socket " + options_.socket_path);
    }
    acceptor_ = std::thread([this] {
        core::name_this_thread("kw-local-accept");
        accept_loop();
    });
}

void LocalServer::accept_loop() {
    while (!stopping_) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (stopping_) return;
            if (errno == EMFILE || errno == ENFILE) {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                continue;
            }
            return;
        }
        reap_finished();
        std::lock_guard lock(mutex_);
        if (stopping_ || connections_.size() >= options_.max_connections) {
            ::close(fd);
            continue;
        }
        auto& c = connections_.emplace_back();
        c.fd = fd;
        c.thread = std::thread([this, &c] {
            core::name_this_thread("kw-local");
            serve(c);
        });
    }
}

void LocalServer::serve(Connection& c) {
    Session session(app_);
    std::vector<std::uint8_t> message;
    for (;;) {
        wire::spin_until_readable(c.fd, wire::kServerSpin);
        // Anything but one well-formed frame at a time is not our protocol: hang up.
        if (wire::read_frame(c.fd, message, 1, wire::kMaxFrame) != wire::FrameRead::ok) break;
        std::vector<std::uint8_t> answer = session.handle(message);
        // Prefix and answer in one send: a client polling for the answer
        // would otherwise wake on the prefix and then sleep for the rest.
        const auto n = static_cast<std::uint32_t>(answer.size());
        answer.insert(answer.begin(), {static_cast<std::uint8_t>(n >> 24), static_cast<std::uint8_t>(n >> 16),
                                       static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)});
        if (!wire::write_all(c.fd, answer.data(), answer.size())) break;
    }
    ::shutdown(c.fd, SHUT_RDWR);
    c.finished = true;
}

void LocalServer::reap_finished() {
    std::lock_guard lock(mutex_);
    for (auto it = connections_.begin(); it != connections_.end();) {
        if (it->finished) {
            it->thread.join();
            ::close(it->fd);
            it = connections_.erase(it);
        } else {
            ++it;
        }
    }
}

void LocalServer::stop() {
    if (listen_fd_ < 0) return;
    stopping_ = true;
    // shutdown() wakes accept(); closing alone would not.
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    ::close(listen_fd_);
    listen_fd_ = -1;
    {
        // A connection blocked in read() sees EOF; one in the middle of a
        // request finishes it and then sees EOF on its next read.
        std::lock_guard lock(mutex_);
        for (auto& c : connections_) ::shutdown(c.fd, SHUT_RD);
    }
    std::lock_guard lock(mutex_);
    for (auto& c : connections_) {
        if (c.thread.joinable()) c.thread.join();
        ::close(c.fd);
    }
    connections_.clear();
    std::filesystem::remove(options_.socket_path);
}

}  // namespace kw::server::local
