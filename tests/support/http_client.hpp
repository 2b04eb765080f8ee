#pragma once
// A small synchronous HTTP/1.1 client for the keywardend integration tests,
// built on Boost.Beast and independent of curl and Python: a second client
// that has to agree with the server about framing, keep-alive and errors.
//
// One HttpClient is one connection (TCP or unix socket), opened on the first
// request and kept open while the server allows keep-alive. It never
// reconnects behind the caller's back: a connection the server closed makes
// the next request throw, so a keep-alive test can fail. Every operation has
// a deadline (the stream's timer, driven by running the io_context).
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace kw::test {

struct HttpResponse {
    int status = 0;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
    bool keep_alive = false;

    [[nodiscard]] nlohmann::json json() const;                              // throws when the body is not JSON
    [[nodiscard]] std::string header(const std::string& lower_name) const;  // "" when absent
    [[nodiscard]] std::string error_code() const;                           // body's error.code, or ""
};

/// What a raw exchange saw: the bytes received and whether (and when) the
/// server closed the connection.
struct RawResult {
    std::string received;
    bool closed = false;  // EOF or reset before the deadline
    std::chrono::milliseconds elapsed{0};
};

class HttpClient {
public:
    static HttpClient tcp(std::string host, std::uint16_t port);
    static HttpClient unix_socket(std::string path);
    ~HttpClient();
    HttpClient(HttpClient&&) noexcept;
    HttpClient& operator=(HttpClient&&) noexcept;

    /// One request; `bearer` becomes "Authorization: Bearer ..." unless empty,
    /// `authorization` (if not empty) is sent verbatim instead.
    HttpResponse request(std::string_view method, std::string_view target, std::string_view body = {},
                         std::string_view bearer = {}, std::string_view authorization = {});
    HttpResponse get(std::string_view target, std::string_view bearer = {}) {
        return request("GET", target, {}, bearer);
    }
    HttpResponse post(std::string_view target, const nlohmann::json& body, std::string_view bearer = {}) {
        return request("POST", target, body.dump(), bearer);
    }

    /// Writes `bytes` as they are (no framing), on the current connection
    /// (opened if needed).
    void send_raw(std::string_view bytes);
    /// Shuts down the sending side (the server sees EOF).
    void shutdown_send();
    /// Reads until the server closes the connection or `timeout` passes.
    RawResult read_until_close(std::chrono::milliseconds timeout);
    /// Slowloris: sends `bytes` one byte per `interval` on a new connection,
    /// then waits, until the server closes it or `limit` passes.
    RawResult drip(std::string_view bytes, std::chrono::milliseconds interval, std::chrono::milliseconds limit);

    [[nodiscard]] bool connected() const;
    [[nodiscard]] int connects() const;  // connections opened so far
    void close();

    std::chrono::milliseconds timeout{std::chrono::seconds(30)};  // per request

    struct Impl;  // per transport, in http_client.cpp

private:
    explicit HttpClient(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace kw::test
