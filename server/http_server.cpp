#include "server/http_server.hpp"

#include <sys/stat.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>

#include "core/thread_name.hpp"
#include "server/response_writer.hpp"
#include "server/socket_access.hpp"

namespace kw::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The query string's key=value pairs; nullopt for a bad percent escape
// ("%zz", a cut-off "%4"), which the caller answers with 400: this runs
// outside the handlers' error mapping, so it must not throw.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view q) {
    std::map<std::string, std::string> out;
    while (!q.empty()) {
        auto amp = q.find('&');
        auto part = q.substr(0, amp);
        auto eq = part.find('=');
        std::string k(part.substr(0, eq));
        std::string v = eq == std::string_view::npos ? "" : std::string(part.substr(eq + 1));
        // Minimal percent-decoding for query values.
        std::string dec;
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (v[i] == '%') {
                if (i + 2 >= v.size()) return std::nullopt;
                const int hi = hex_digit(v[i + 1]);
                const int lo = hex_digit(v[i + 2]);
                if (hi < 0 || lo < 0) return std::nullopt;
                dec.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
            } else {
                dec.push_back(v[i] == '+' ? ' ' : v[i]);
            }
        }
        if (!k.empty()) out[k] = dec;
        if (amp == std::string_view::npos) break;
        q.remove_prefix(amp + 1);
    }
    return out;
}

// One connection: read a request, answer it, repeat while keep-alive.
template <typename Socket>
class Session : public std::enable_shared_from_this<Session<Socket>> {
public:
    Session(Socket socket, App& app, const HttpOptions& options, std::string peer,
            std::shared_ptr<std::atomic<std::size_t>> in_flight)
        : socket_(std::move(socket)),
          deadline_(socket_.native_handle()),
          app_(app),
          options_(options),
          peer_(std::move(peer)),
          in_flight_(std::move(in_flight)) {}

    void run(DeadlineSweeper& sweeper) {
        // The sweeper's handle shares this session's ownership, so the
        // socket outlives any sweep that holds it.
        sweeper.watch(std::shared_ptr<Deadline>(this->shared_from_this(), &deadline_));
        read();
    }

private:
    void read() {
        parser_.emplace();
        parser_->body_limit(options_.body_limit);
        parser_->header_limit(static_cast<std::uint32_t>(options_.header_limit));
        // Nothing of the next request read yet: a shutdown may close the
        // connection (Deadline::close_if_idle), unless its bytes are waiting.
        deadline_.set_idle(buffer_.size() == 0);
        deadline_.arm(std::chrono::seconds(options_.request_timeout_s));
        http::async_read(socket_, buffer_, *parser_,
                         [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        deadline_.set_idle(false);
        deadline_.disarm();  // handling takes what it takes; the peer is not waited on
        // Cut at its deadline (slowloris headers, a stalled body): nothing
        // is answered on a connection that is already shut down.
        if (deadline_.was_cut()) return close();
        if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted ||
            ec == asio::error::connection_reset) {
            return close();
        }
        // Shutting down, the connection was closed for reading while a request
        // came in (its header had arrived, its body had not): the client sent
        // it after the stop began and sees the connection end, not a 400.
        if (ec && deadline_.was_drained()) return close();
        if (ec) {
            // Oversized or malformed requests get an answer, then the connection closes.
            int status = ec == http::error::body_limit ? 413 : (ec == http::error::header_limit ? 431 : 400);
            std::string code = status == 413 ? "BODY_TOO_LARGE" : (status == 431 ? "HEADERS_TOO_LARGE" : "BAD_REQUEST");
            return send_error(status, code, ec.message());
        }
        auto req = parser_->release();
        Request r;
        r.method = std::string(req.method_string());
        std::string target(req.target());
        auto qm = target.find('?');
        r.target = target.substr(0, qm);
        if (qm != std::string::npos) {
            auto query = parse_query(std::string_view(target).substr(qm + 1));
            if (!query) return send_error(400, "BAD_REQUEST", "bad percent escape in the query string");
            r.query = std::move(*query);
        }
        r.body = std::move(req.body());
        r.authorization = std::string(req[http::field::authorization]);
        r.peer = peer_;
        ++*in_flight_;  // until the answer is written (stop() waits for it)
        Response resp = handle(app_, r);
        keep_alive_ = req.keep_alive() && !app_.draining.load();
        write(resp, req.version(), true);
    }

    void send_error(int status, const std::string& code, const std::string& message) {
        keep_alive_ = false;
        write(Response::json({{"error", {{"code", code}, {"message", message}}}}, status), 11);
    }

    void write(const Response& resp, unsigned version, bool counted = false) {
        serialize_response(resp, version, keep_alive_, out_);  // out_ lives until the write completes
        deadline_.arm(std::chrono::seconds(options_.request_timeout_s));
        asio::async_write(socket_, asio::buffer(out_),
                          [self = this->shared_from_this(), counted](beast::error_code ec, std::size_t) {
                              if (counted) --*self->in_flight_;
                              if (ec || !self->keep_alive_) return self->close();
                              self->read();
                          });
    }

    void close() {
        beast::error_code ec;
        socket_.shutdown(Socket::shutdown_send, ec);
    }

    Socket socket_;
    Deadline deadline_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::string out_;  // the response being written
    App& app_;
    const HttpOptions& options_;
    std::string peer_;
    std::shared_ptr<std::atomic<std::size_t>> in_flight_;
    bool keep_alive_ = false;
};

template <typename Socket>
void start_session(Socket socket, App& app, const HttpOptions& options, DeadlineSweeper& sweeper,
                   const std::shared_ptr<std::atomic<std::size_t>>& in_flight, const char* kind) {
    std::string peer = kind;
    if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
        beast::error_code pe;
        auto ep = socket.remote_endpoint(pe);
        if (!pe) peer = "tcp:" + ep.address().to_string();
    }
    std::make_shared<Session<Socket>>(std::move(socket), app, options, peer, in_flight)->run(sweeper);
}

template <typename Acceptor, typename Socket>
void accept_loop(Acceptor& acceptor, App& app, const HttpOptions& options, DeadlineSweeper& sweeper,
                 std::shared_ptr<std::atomic<std::size_t>> in_flight, const char* kind) {
    acceptor.async_accept([&acceptor, &app, &options, &sweeper, in_flight, kind](beast::error_code ec, Socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
        if (!ec) start_session(std::move(socket), app, options, sweeper, in_flight, kind);
        accept_loop<Acceptor, Socket>(acceptor, app, options, sweeper, in_flight, kind);
    });
}

// At shutdown, before the listener closes: connections the kernel has
// already completed wait in its backlog, and a client may have sent its
// request on one. Closing the listener would reset them; they are taken and
// served instead (their answers close them).
template <typename Acceptor, typename Socket>
void take_backlog(Acceptor& acceptor, asio::io_context& io, App& app, const HttpOptions& options,
                  DeadlineSweeper& sweeper, const std::shared_ptr<std::atomic<std::size_t>>& in_flight,
                  const char* kind) {
    beast::error_code ec;
    acceptor.non_blocking(true, ec);
    while (!ec) {
        Socket socket(io);
        acceptor.accept(socket, ec);  // would_block once the backlog is empty
        if (!ec) start_session(std::move(socket), app, options, sweeper, in_flight, kind);
    }
}

}  // namespace

HttpServer::HttpServer(App& app, HttpOptions options) : app_(app), options_(std::move(options)) {}

HttpServer::~HttpServer() {
    stop(0);
}

std::size_t HttpServer::in_flight() const noexcept {
    return in_flight_->load();
}

void HttpServer::start() {
    if (!options_.listen.empty()) {
        auto colon = options_.listen.rfind(':');
        if (colon == std::string::npos)
            throw std::runtime_error("listen address must be HOST:PORT, got " + options_.listen);
        auto host = options_.listen.substr(0, colon);
        auto port = static_cast<unsigned short>(std::stoi(options_.listen.substr(colon + 1)));
        asio::ip::tcp::endpoint ep(asio::ip::make_address(host), port);
        tcp_ = std::make_unique<asio::ip::tcp::acceptor>(io_);
        tcp_->open(ep.protocol());
        tcp_->set_option(asio::socket_base::reuse_address(true));
        tcp_->bind(ep);
        tcp_->listen();
        tcp_port_ = tcp_->local_endpoint().port();
        accept_loop<asio::ip::tcp::acceptor, asio::ip::tcp::socket>(*tcp_, app_, options_, sweeper_, in_flight_, "tcp");
    }
    if (!options_.unix_socket.empty()) {
        std::filesystem::remove(options_.unix_socket);
        // Created 0600 (umask during bind): only the daemon's user may
        // connect, unless a group is given access before listen().
        const asio::local::stream_protocol::endpoint ep(options_.unix_socket);
        unix_ = std::make_unique<asio::local::stream_protocol::acceptor>(io_, ep.protocol());
        const mode_t old = ::umask(0177);
        beast::error_code ec;
        unix_->bind(ep, ec);
        ::umask(old);
        if (ec) throw beast::system_error(ec, "unix socket " + options_.unix_socket);
        if (options_.unix_socket_gid) share_socket_with_group(options_.unix_socket, *options_.unix_socket_gid);
        unix_->listen();
        accept_loop<asio::local::stream_protocol::acceptor, asio::local::stream_protocol::socket>(
            *unix_, app_, options_, sweeper_, in_flight_, "unix");
    }
    sweeper_.start();
    for (std::size_t i = 0; i < std::max<std::size_t>(1, options_.threads); ++i) {
        threads_.emplace_back([this] {
            core::name_this_thread("kw-http");
            work();
        });
    }
}

void HttpServer::work() {
    // A worker that blocks as soon as the queue is empty must be woken (a
    // futex or epoll wake-up, tens of microseconds on a busy VM) for the
    // next request; at moderate load that is most requests, and the wake-ups
    // make the latency tail. Polling a little longer first, yielding the CPU
    // between polls so the threads with work run first, cut p50 at 16,900
    // requests/s from about 180 to 145 us here, and the tail a little
    // (docs/performance.md). It is not free at full load: a worker still
    // runs out of work now and then, and on a machine shared with the
    // client the polling takes CPU the client wanted (spin_us 0 gave about
    // 5% more verifications a second at the peak there).
    if (options_.spin.count() <= 0) {
        io_.run();
        return;
    }
    while (!io_.stopped()) {
        if (io_.poll_one() > 0) continue;
        bool found = false;
        const auto until = std::chrono::steady_clock::now() + options_.spin;
        while (!found && std::chrono::steady_clock::now() < until) {
            std::this_thread::yield();
            found = io_.poll_one() > 0;
        }
        if (!found && io_.run_one() == 0) return;  // stopped, or out of work
    }
}

void HttpServer::stop(int grace_s) {
    if (threads_.empty()) return;
    // Stop listening, but serve what already waits in the backlog.
    auto listening = std::make_shared<std::atomic<bool>>(true);
    asio::post(io_, [this, listening] {
        beast::error_code ec;
        if (tcp_) {
            take_backlog<asio::ip::tcp::acceptor, asio::ip::tcp::socket>(*tcp_, io_, app_, options_, sweeper_,
                                                                         in_flight_, "tcp");
            tcp_->close(ec);
        }
        if (unix_) {
            take_backlog<asio::local::stream_protocol::acceptor, asio::local::stream_protocol::socket>(
                *unix_, io_, app_, options_, sweeper_, in_flight_, "unix");
            unix_->close(ec);
        }
        listening->store(false);
    });
    // Then finish every request that has reached us: a connection with a
    // request in progress, or with its bytes waiting, is answered (and its
    // answer says Connection: close); an idle keep-alive connection is
    // closed. A client that sends on a connection just as it is closed sees
    // the close and may retry, as with any HTTP/1.1 server.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_s);
    while (std::chrono::steady_clock::now() < deadline) {
        const bool quiet = !listening->load() && sweeper_.close_idle() == 0 && in_flight_->load() == 0;
        if (quiet) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    io_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    if (!options_.unix_socket.empty()) std::filesystem::remove(options_.unix_socket);
}

}  // namespace kw::server
