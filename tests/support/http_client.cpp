#include "tests/support/http_client.hpp"

// clang-format off
#include <utility>  // Boost 1.74 asio uses std::exchange without including <utility>
#include <boost/asio.hpp>
// clang-format on
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <stdexcept>

namespace kw::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

nlohmann::json HttpResponse::json() const {
    return nlohmann::json::parse(body);
}

std::string HttpResponse::header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
}

std::string HttpResponse::error_code() const {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("code")) {
        return j["error"]["code"].get<std::string>();
    }
    return {};
}

// The transport-independent part; StreamImpl<Protocol> supplies the socket.
struct HttpClient::Impl {
    virtual ~Impl() = default;
    virtual void connect(std::chrono::milliseconds timeout) = 0;
    [[nodiscard]] virtual bool is_open() const = 0;
    virtual void close() = 0;
    virtual void write(const http::request<http::string_body>& req, std::chrono::milliseconds timeout) = 0;
    virtual void read(http::response_parser<http::string_body>& parser, std::chrono::milliseconds timeout) = 0;
    virtual void write_raw(std::string_view bytes, std::chrono::milliseconds timeout) = 0;
    virtual void shutdown_send() = 0;
    virtual RawResult read_until_close(std::chrono::milliseconds timeout) = 0;
    virtual RawResult drip(std::string_view bytes, std::chrono::milliseconds interval,
                           std::chrono::milliseconds limit) = 0;

    std::string host;  // for the Host header
    int connects = 0;
};

namespace {

// Boost 1.74's Beast takes boost::string_view.
beast::string_view sv(std::string_view s) {
    return {s.data(), s.size()};
}

// Runs one asynchronous operation to completion on `io`: the stream's timer
// (expires_after) cancels it at its deadline, which a plain synchronous call
// could not do.
template <typename Start>
beast::error_code run_one(asio::io_context& io, Start&& start) {
    beast::error_code result = asio::error::would_block;
    io.restart();
    start([&result](beast::error_code ec, std::size_t = 0) { result = ec; });
    io.run();
    return result;
}

template <typename Protocol>
struct StreamImpl final : HttpClient::Impl {
    explicit StreamImpl(typename Protocol::endpoint ep) : endpoint(std::move(ep)) {}

    void connect(std::chrono::milliseconds timeout) override {
        stream.emplace(io);
        buffer.clear();
        stream->expires_after(timeout);
        auto ec = run_one(io, [&](auto handler) { stream->async_connect(endpoint, handler); });
        if (ec) {
            stream.reset();
            throw std::runtime_error("connect: " + ec.message());
        }
        ++connects;
    }
    [[nodiscard]] bool is_open() const override { return stream.has_value() && stream->socket().is_open(); }
    void close() override {
        if (!stream) return;
        beast::error_code ec;
        stream->socket().shutdown(Protocol::socket::shutdown_both, ec);
        stream->socket().close(ec);
        stream.reset();
    }
    void write(const http::request<http::string_body>& req, std::chrono::milliseconds timeout) override {
        stream->expires_after(timeout);
        auto ec = run_one(io, [&](auto handler) { http::async_write(*stream, req, handler); });
        if (ec) throw std::runtime_error("write: " + ec.message());
    }
    void read(http::response_parser<http::string_body>& parser, std::chrono::milliseconds timeout) override {
        stream->expires_after(timeout);
        auto ec = run_one(io, [&](auto handler) { http::async_read(*stream, buffer, parser, handler); });
        if (ec) throw std::runtime_error("read: " + ec.message());
    }
    void write_raw(std::string_view bytes, std::chrono::milliseconds timeout) override {
        stream->expires_after(timeout);
        auto ec = run_one(io, [&](auto handler) { asio::async_write(*stream, asio::buffer(bytes), handler); });
        if (ec) throw std::runtime_error("raw write: " + ec.message());
    }
    void shutdown_send() override {
        beast::error_code ec;
        stream->socket().shutdown(Protocol::socket::shutdown_send, ec);
    }
    RawResult read_until_close(std::chrono::milliseconds timeout) override {
        RawResult out;
        const auto start = Clock::now();
        out.received = beast::buffers_to_string(buffer.data());
        buffer.consume(buffer.size());
        stream->expires_after(timeout);
        for (;;) {
            char chunk[4096];
            std::size_t got = 0;
            beast::error_code ec = run_one(io, [&](auto handler) {
                stream->async_read_some(asio::buffer(chunk), [&got, handler](beast::error_code e, std::size_t n) {
                    got = n;
                    handler(e, n);
                });
            });
            out.received.append(chunk, got);
            if (!ec) continue;
            // A timeout is our deadline passing; anything else means the
            // server ended the connection (EOF, or a reset after unread data).
            out.closed = ec != beast::error::timeout;
            break;
        }
        out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
        stream.reset();
        return out;
    }

    RawResult drip(std::string_view bytes, std::chrono::milliseconds interval,
                   std::chrono::milliseconds limit) override {
        // Plain poll(2) on the descriptor: we must notice the close while
        // we are between two bytes, which Beast's stream timer cannot do
        // without closing the socket itself.
        connect(limit);
        const int fd = stream->socket().native_handle();
        RawResult out;
        const auto start = Clock::now();
        std::size_t next = 0;
        for (;;) {
            const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
            if (elapsed >= limit) break;
            if (next < bytes.size() && ::send(fd, bytes.data() + next, 1, MSG_NOSIGNAL) == 1) ++next;
            pollfd p{fd, POLLIN, 0};
            const auto wait = std::min(interval, limit - elapsed);
            if (::poll(&p, 1, static_cast<int>(wait.count())) > 0) {
                char chunk[4096];
                const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
                if (n <= 0) {
                    out.closed = true;
                    break;
                }
                out.received.append(chunk, static_cast<std::size_t>(n));
            }
        }
        out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
        close();
        return out;
    }

    asio::io_context io;
    typename Protocol::endpoint endpoint;
    std::optional<beast::basic_stream<Protocol>> stream;
    beast::flat_buffer buffer;
};

}  // namespace

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

HttpClient HttpClient::tcp(std::string host, std::uint16_t port) {
    auto impl =
        std::make_unique<StreamImpl<asio::ip::tcp>>(asio::ip::tcp::endpoint(asio::ip::make_address(host), port));
    impl->host = host + ":" + std::to_string(port);
    return HttpClient(std::move(impl));
}

HttpClient HttpClient::unix_socket(std::string path) {
    auto impl =
        std::make_unique<StreamImpl<asio::local::stream_protocol>>(asio::local::stream_protocol::endpoint(path));
    impl->host = "localhost";
    return HttpClient(std::move(impl));
}

HttpResponse HttpClient::request(std::string_view method, std::string_view target, std::string_view body,
                                 std::string_view bearer, std::string_view authorization) {
    if (!impl_->is_open()) impl_->connect(timeout);
    http::request<http::string_body> req;
    req.method_string(sv(method));
    req.target(sv(target));
    req.version(11);
    req.set(http::field::host, impl_->host);
    req.set(http::field::user_agent, "keywarden-test-client");
    if (!authorization.empty()) {
        req.set(http::field::authorization, sv(authorization));
    } else if (!bearer.empty()) {
        req.set(http::field::authorization, "Bearer " + std::string(bearer));
    }
    if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = std::string(body);
    }
    req.keep_alive(true);
    req.prepare_payload();
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    // A server may answer and close before it has read the whole request
    // (413 for an oversize body), so a failed write is followed by a read
    // of that answer, as curl does; without an answer the write error stands.
    std::string write_error;
    try {
        impl_->write(req, timeout);
    } catch (const std::exception& e) {
        write_error = e.what();
    }
    try {
        if (!impl_->is_open()) throw std::runtime_error(write_error);
        impl_->read(parser, timeout);
    } catch (const std::exception& e) {
        impl_->close();
        throw std::runtime_error(write_error.empty() ? e.what() : write_error + " (and no answer: " + e.what() + ")");
    }
    auto res = parser.release();
    HttpResponse out;
    out.status = res.result_int();
    for (const auto& field : res) {
        std::string name(field.name_string());
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        out.headers[name] = std::string(field.value());
    }
    out.body = std::move(res.body());
    out.keep_alive = res.keep_alive();
    if (!out.keep_alive) impl_->close();
    return out;
}

void HttpClient::send_raw(std::string_view bytes) {
    if (!impl_->is_open()) impl_->connect(timeout);
    impl_->write_raw(bytes, timeout);
}

void HttpClient::shutdown_send() {
    if (impl_->is_open()) impl_->shutdown_send();
}

RawResult HttpClient::read_until_close(std::chrono::milliseconds limit) {
    if (!impl_->is_open()) throw std::logic_error("read_until_close: not connected");
    return impl_->read_until_close(limit);
}

RawResult HttpClient::drip(std::string_view bytes, std::chrono::milliseconds interval,
                           std::chrono::milliseconds limit) {
    return impl_->drip(bytes, interval, limit);
}

bool HttpClient::connected() const {
    return impl_->is_open();
}

int HttpClient::connects() const {
    return impl_->connects;
}

void HttpClient::close() {
    impl_->close();
}

}  // namespace kw::test
