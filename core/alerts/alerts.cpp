#include "core/alerts/alerts.hpp"

// clang-format off
#include <utility>  // Boost 1.74 asio uses std::exchange without including <utility>
#include <boost/asio.hpp>
// clang-format on
#include <algorithm>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "core/clock.hpp"
#include "core/thread_name.hpp"

namespace kw::core::alerts {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

bool parse_url(const std::string& url, bool& tls, std::string& host, std::string& port, std::string& path) {
    std::string rest;
    if (url.rfind("https://", 0) == 0) {
        tls = true;
        rest = url.substr(8);
        port = "443";
    } else if (url.rfind("http://", 0) == 0) {
        tls = false;
        rest = url.substr(7);
        port = "80";
    } else {
        return false;
    }
    auto slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    path = slash == std::string::npos ? "/" : rest.substr(slash);
    auto colon = authority.rfind(':');
    if (colon != std::string::npos && authority.find(']') == std::string::npos) {
        port = authority.substr(colon + 1);
        authority = authority.substr(0, colon);
    }
    host = authority;
    return !host.empty();
}

Dispatcher::Dispatcher(std::vector<Target> targets, metrics::Registry& metrics, Options options)
    : targets_(std::move(targets)), metrics_(metrics), options_(options) {
    metrics_.help("keywarden_alerts_total", "counter", "alerts by kind and delivery outcome");
    worker_ = std::thread([this] {
        name_this_thread("kw-alerts");
        run();
    });
}

Dispatcher::~Dispatcher() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    worker_.join();
}

std::size_t Dispatcher::pending() {
    std::lock_guard lock(mutex_);
    return queue_.size();
}

void Dispatcher::notify(const std::string& kind, const std::string& key, const std::string& message,
                        nlohmann::json details, const std::vector<Target>& also) {
    const std::string body = nlohmann::json{
        {"kind", kind},
        {"key", key},
        {"message", message},
        {"time", format_time(SystemClock{}.now())},
        {"details",
         std::move(details)}}.dump();
    std::set<std::string> queued;  // a hook that is also a global webhook gets the alert once
    std::lock_guard lock(mutex_);
    auto enqueue = [&](const Target& t) {
        if (!t.kinds.empty() && !t.kinds.contains(kind)) return;
        if (!queued.insert(t.url).second) return;
        if (queue_.size() >= options_.queue_limit) {
            metrics_.inc("keywarden_alerts_total", {{"kind", queue_.front().kind}, {"outcome", "dropped"}});
            queue_.pop_front();
        }
        queue_.push_back(Alert{kind, body, 0, std::chrono::steady_clock::now(), t.url});
    };
    for (const auto& t : targets_) enqueue(t);
    for (const auto& t : also) enqueue(t);
    wake_.notify_one();
}

bool Dispatcher::post(const std::string& url, const std::string& body) {
    bool tls = false;
    std::string host, port, path;
    if (!parse_url(url, tls, host, port, path)) return false;
    try {
        asio::io_context io;
        asio::ip::tcp::resolver resolver(io);
        auto endpoints = resolver.resolve(host, port);
        http::request<http::string_body> req{http::verb::post, path, 11};
        req.set(http::field::host, host);
        req.set(http::field::user_agent, "keywardend");
        req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        beast::flat_buffer buffer;
        http::response<http::string_body> res;
        if (tls) {
            asio::ssl::context ctx(asio::ssl::context::tls_client);
            ctx.set_default_verify_paths();
            ctx.set_verify_mode(asio::ssl::verify_peer);
            beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
            SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
            stream.set_verify_callback(asio::ssl::host_name_verification(host));
            beast::get_lowest_layer(stream).expires_after(options_.timeout);
            beast::get_lowest_layer(stream).connect(endpoints);
            stream.handshake(asio::ssl::stream_base::client);
            http::write(stream, req);
            http::read(stream, buffer, res);
        } else {
            beast::tcp_stream stream(io);
            stream.expires_after(options_.timeout);
            stream.connect(endpoints);
            http::write(stream, req);
            http::read(stream, buffer, res);
        }
        return res.result_int() >= 200 && res.result_int() < 300;
    } catch (const std::exception&) {
        return false;
    }
}

void Dispatcher::run() {
    for (;;) {
        Alert a;
        {
            std::unique_lock lock(mutex_);
            for (;;) {
                if (queue_.empty()) {
                    if (stopping_) return;
                    wake_.wait(lock);
                    continue;
                }
                auto now = std::chrono::steady_clock::now();
                // Take the first alert that is due; retries wait their backoff.
                auto it = std::find_if(queue_.begin(), queue_.end(),
                                       [&](const Alert& x) { return x.due <= now || stopping_; });
                if (it != queue_.end()) {
                    a = std::move(*it);
                    queue_.erase(it);
                    break;
                }
                auto next =
                    std::min_element(queue_.begin(), queue_.end(), [](auto& x, auto& y) { return x.due < y.due; });
                wake_.wait_until(lock, next->due);
            }
        }
        const bool ok = post(a.url, a.body);
        ++a.attempts;
        if (ok) {
            metrics_.inc("keywarden_alerts_total", {{"kind", a.kind}, {"outcome", "delivered"}});
            continue;
        }
        std::lock_guard lock(mutex_);
        if (a.attempts >= options_.max_attempts || stopping_) {
            metrics_.inc("keywarden_alerts_total", {{"kind", a.kind}, {"outcome", "failed"}});
            continue;
        }
        metrics_.inc("keywarden_alerts_total", {{"kind", a.kind}, {"outcome", "retried"}});
        a.due = std::chrono::steady_clock::now() + options_.first_backoff * (1 << (a.attempts - 1));
        queue_.push_back(std::move(a));
    }
}

}  // namespace kw::core::alerts
