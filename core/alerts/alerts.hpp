#pragma once
// Alert delivery to webhooks.
//
// notify() only enqueues (bounded; the oldest alert is dropped when full) and
// never blocks a request. A few worker threads POST each alert as JSON to
// every target subscribed to its kind, retrying with exponential backoff;
// one attempt has a deadline from connect to answer, and a URL is tried by
// one worker at a time. Outcomes are counted in metrics
// (keywarden_alerts_total{kind,outcome}). https targets must present a
// certificate for their host name that chains to the trusted CAs.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/metrics/registry.hpp"

namespace kw::core::alerts {

// rotation_failed, key_expiring, credits_low, credits_exhausted,
// verify_failed_spike, audit_failure
struct Target {
    std::string url;              // http://host[:port]/path or https://...
    std::set<std::string> kinds;  // empty = every kind
};

struct Options {
    std::size_t queue_limit = 1000;
    int max_attempts = 5;
    std::chrono::milliseconds first_backoff{500};
    std::chrono::seconds timeout{5};  // one delivery attempt, connect to answer
    // At shutdown, queued alerts get one attempt each within this; the rest
    // are counted as dropped.
    std::chrono::milliseconds shutdown_grace{2000};
    // Delivery threads. Each URL is tried by one at a time, so a webhook
    // that hangs until the timeout delays only its own alerts.
    std::size_t workers = 4;
    // CA certificates (PEM) that https targets must chain to; empty: the
    // system store. For webhooks inside a network with its own CA.
    std::string ca_file;
};

class Dispatcher {
public:
    /// Throws Error(config) when options.ca_file cannot be read as PEM
    /// certificates, so a daemon with a bad CA file does not start.
    Dispatcher(std::vector<Target> targets, metrics::Registry& metrics, Options options = {});
    ~Dispatcher();  // one attempt each for queued alerts within shutdown_grace, then stops
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;

    /// Queues the alert for every target subscribed to `kind`: the ones
    /// given at construction, plus `also` (e.g. the alert hooks of the
    /// policy governing `key`). A URL gets each alert once.
    void notify(const std::string& kind, const std::string& key, const std::string& message,
                nlohmann::json details = nlohmann::json::object(), const std::vector<Target>& also = {});
    [[nodiscard]] std::size_t pending();

private:
    struct Alert {
        std::string kind;
        std::string body;
        int attempts = 0;
        std::chrono::steady_clock::time_point due;
        std::string url;
    };
    void run();
    bool post(const std::string& url, const std::string& body, std::chrono::milliseconds budget);
    bool shutdown_overdue();

    std::vector<Target> targets_;
    metrics::Registry& metrics_;
    Options options_;
    struct Tls;                 // the TLS client settings, built once
    std::unique_ptr<Tls> tls_;  // shared by the workers (read-only after start)
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Alert> queue_;
    std::set<std::string> busy_urls_;  // being tried by a worker
    bool stopping_ = false;
    std::optional<std::chrono::steady_clock::time_point> stop_deadline_;
    std::vector<std::thread> workers_;
};

/// Splits "http://host:port/path" into its parts; false if not http(s).
bool parse_url(const std::string& url, bool& tls, std::string& host, std::string& port, std::string& path);

}  // namespace kw::core::alerts
