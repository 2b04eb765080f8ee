#pragma once
// Counters, gauges and latency histograms in the Prometheus text format.
// Lock-light: one mutex per registry, taken briefly on each update; fine for
// the request rates a single keywardend serves (see docs/performance.md).
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kw::core::metrics {

/// `{name="value",...}` label sets, kept sorted so identical sets match.
using Labels = std::map<std::string, std::string>;

class Registry {
public:
    void inc(const std::string& name, const Labels& labels = {}, double by = 1);
    void set(const std::string& name, const Labels& labels, double value);
    /// Observes a duration in seconds into a histogram.
    void observe(const std::string& name, const Labels& labels, double seconds);
    void help(const std::string& name, const std::string& type, const std::string& text);
    /// Gauges computed at scrape time.
    void gauge_fn(const std::string& name, std::function<std::vector<std::pair<Labels, double>>()> fn);

    [[nodiscard]] std::string render();
    [[nodiscard]] double value(const std::string& name, const Labels& labels = {});

private:
    struct Histogram {
        std::vector<std::uint64_t> buckets;
        std::uint64_t count = 0;
        double sum = 0;
    };
    std::mutex mutex_;
    std::map<std::string, std::pair<std::string, std::string>> help_;  // name -> (type, text)
    std::map<std::string, std::map<Labels, double>> values_;
    std::map<std::string, std::map<Labels, Histogram>> histograms_;
    std::map<std::string, std::function<std::vector<std::pair<Labels, double>>()>> gauge_fns_;
};

[[nodiscard]] const std::vector<double>& latency_buckets();

}  // namespace kw::core::metrics
