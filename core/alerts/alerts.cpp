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
#include "core/error.hpp"
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

// One SSL_CTX for every attempt: loading the CA store per alert would cost
// milliseconds, and a CA file that does not load must stop the start, not
// fail each alert later. OpenSSL allows SSL objects to be made from one
// context in several threads once it is no longer changed.
struct Dispatcher::Tls {
    asio::ssl::context ctx{asio::ssl::context::tls_client};
};

Dispatcher::Dispatcher(std::vector<Target> targets, metrics::Registry& metrics, Options options)
    : targets_(std::move(targets)), metrics_(metrics), options_(std::move(options)), tls_(std::make_unique<Tls>()) {
    boost::system::error_code ec;
    if (options_.ca_file.empty()) {
        tls_->ctx.set_default_verify_paths(ec);
    } else {
        tls_->ctx.load_verify_file(options_.ca_file, ec);
    }
    if (ec) {
        const std::string what =
            options_.ca_file.empty() ? "the system CA store" : "alerts.ca_file '" + options_.ca_file + "'";
        throw Error(ErrorKind::config, what + ": cannot load CA certificates: " + ec.message());
    }
    tls_->ctx.set_verify_mode(asio::ssl::verify_peer);
    metrics_.help("keywarden_alerts_total", "counter", "alerts by kind and delivery outcome");
    for (std::size_t i = 0; i < std::max<std::size_t>(1, options_.workers); ++i) {
        workers_.emplace_back([this] {
            name_this_thread("kw-alerts");
            run();
        });
    }
}

Dispatcher::~Dispatcher() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        stop_deadline_ = std::chrono::steady_clock::now() + options_.shutdown_grace;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
}

bool Dispatcher::shutdown_overdue() {
    std::lock_guard lock(mutex_);
    return stopping_ && std::chrono::steady_clock::now() >= *stop_deadline_;
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

namespace {

// A host name looked up on a thread of its own. getaddrinfo cannot be
// cancelled, and asio's resolver joins its background thread when its
// io_context goes: a DNS server that never answers (20 s here with the
// C library's defaults) would hold the alert worker, and shutdown, past any
// deadline. The attempt waits for the lookup only within its own deadline;
// a lookup still running then finishes alone and only touches this state.
struct Lookup {
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;
    boost::system::error_code ec;
    asio::ip::tcp::resolver::results_type results;
};

std::shared_ptr<Lookup> start_lookup(const std::string& host, const std::string& port) {
    auto lookup = std::make_shared<Lookup>();
    std::thread([lookup, host, port] {
        asio::io_context own;  // the blocking resolve runs on this thread
        asio::ip::tcp::resolver resolver(own);
        boost::system::error_code ec;
        auto results = resolver.resolve(host, port, ec);
        std::lock_guard lock(lookup->mutex);
        lookup->ec = ec;
        lookup->results = std::move(results);
        lookup->done = true;
        lookup->done_cv.notify_all();
    }).detach();
    return lookup;
}

}  // namespace

bool Dispatcher::post(const std::string& url, const std::string& body, std::chrono::milliseconds budget) {
    bool tls = false;
    std::string host, port, path;
    if (!parse_url(url, tls, host, port, path)) return false;
    // Every step is asynchronous and the whole exchange runs under one
    // deadline: Beast's stream timeouts apply to asynchronous operations
    // only, and a webhook that accepts and never answers must not hold the
    // alert thread (and so shutdown) forever.
    const auto end = std::chrono::steady_clock::now() + budget;
    try {
        asio::ip::tcp::resolver::results_type endpoints;
        {
            const auto lookup = start_lookup(host, port);  // throws if no thread can be made
            std::unique_lock lock(lookup->mutex);
            // In slices, so a shutdown whose grace is over cuts the wait short.
            while (!lookup->done && std::chrono::steady_clock::now() < end && !shutdown_overdue()) {
                lookup->done_cv.wait_for(lock, std::chrono::milliseconds(100));
            }
            if (!lookup->done || lookup->ec) return false;
            endpoints = lookup->results;
        }
        asio::io_context io;
        http::request<http::string_body> req{http::verb::post, path, 11};
        req.set(http::field::host, host);
        req.set(http::field::user_agent, "keywardend");
        req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        beast::flat_buffer buffer;
        http::response<http::string_body> res;
        bool answered = false;
        beast::ssl_stream<beast::tcp_stream> tls_stream(io, tls_->ctx);
        beast::tcp_stream plain(io);
        auto& lowest = tls ? beast::get_lowest_layer(tls_stream) : plain;
        auto exchange = [&](auto& stream) {
            http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
                if (ec) return;
                http::async_read(stream, buffer, res, [&](beast::error_code rec, std::size_t) { answered = !rec; });
            });
        };
        if (tls) {
            SSL_set_tlsext_host_name(tls_stream.native_handle(), host.c_str());
            tls_stream.set_verify_callback(asio::ssl::host_name_verification(host));
        }
        lowest.async_connect(endpoints, [&](beast::error_code cec, const asio::ip::tcp::endpoint&) {
            if (cec) return;
            if (!tls) return exchange(plain);
            tls_stream.async_handshake(asio::ssl::stream_base::client, [&](beast::error_code hec) {
                if (!hec) exchange(tls_stream);
            });
        });
        // In slices, so a shutdown whose grace is over cuts the attempt short.
        while (!io.stopped() && !shutdown_overdue()) {
            const auto left = end - std::chrono::steady_clock::now();
            if (left <= std::chrono::steady_clock::duration::zero()) break;
            io.run_for(std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(100)));
        }
        // An attempt cut short ends here, its handlers run (with an error)
        // while everything they refer to is still alive.
        if (!io.stopped()) {
            beast::error_code ignored;
            lowest.socket().close(ignored);
            io.restart();
            io.poll();
        }
        return answered && res.result_int() >= 200 && res.result_int() < 300;
    } catch (const std::exception&) {
        return false;
    }
}

void Dispatcher::run() {
    for (;;) {
        Alert a;
        std::chrono::milliseconds budget = std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout);
        {
            std::unique_lock lock(mutex_);
            for (;;) {
                const auto now = std::chrono::steady_clock::now();
                if (stopping_ && now >= *stop_deadline_) {
                    for (const auto& left : queue_)
                        metrics_.inc("keywarden_alerts_total", {{"kind", left.kind}, {"outcome", "dropped"}});
                    queue_.clear();
                }
                if (queue_.empty()) {
                    if (stopping_) return;
                    wake_.wait(lock);
                    continue;
                }
                // The first alert that is due (retries wait their backoff; at
                // shutdown all are) to a URL no other worker is trying: a
                // webhook that hangs holds one worker, not every delivery.
                auto it = std::find_if(queue_.begin(), queue_.end(), [&](const Alert& x) {
                    return (x.due <= now || stopping_) && !busy_urls_.contains(x.url);
                });
                if (it != queue_.end()) {
                    a = std::move(*it);
                    queue_.erase(it);
                    busy_urls_.insert(a.url);
                    if (stopping_) {
                        budget = std::min(budget,
                                          std::chrono::duration_cast<std::chrono::milliseconds>(*stop_deadline_ - now));
                    }
                    break;
                }
                // Nothing to take: wait for the next due time, or for a busy
                // URL to come free (notified), whichever is first.
                auto next = queue_.end();
                for (auto x = queue_.begin(); x != queue_.end(); ++x) {
                    if (!busy_urls_.contains(x->url) && (next == queue_.end() || x->due < next->due)) next = x;
                }
                if (next == queue_.end()) {  // every queued alert's URL is busy
                    if (stopping_) {
                        wake_.wait_until(lock, *stop_deadline_);
                    } else {
                        wake_.wait(lock);
                    }
                    continue;
                }
                wake_.wait_until(lock, stopping_ ? std::min(next->due, *stop_deadline_) : next->due);
            }
        }
        const bool ok = budget.count() > 0 && post(a.url, a.body, budget);
        ++a.attempts;
        std::lock_guard lock(mutex_);
        busy_urls_.erase(a.url);
        wake_.notify_all();
        if (ok) {
            metrics_.inc("keywarden_alerts_total", {{"kind", a.kind}, {"outcome", "delivered"}});
            continue;
        }
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
