#include "core/metrics/registry.hpp"

#include <sstream>

namespace kw::core::metrics {

const std::vector<double>& latency_buckets() {
    static const std::vector<double> b{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  1,      5};
    return b;
}

namespace {
std::string label_text(const Labels& labels, const std::string& extra_key = {}, const std::string& extra_value = {}) {
    if (labels.empty() && extra_key.empty()) return {};
    std::string s = "{";
    bool first = true;
    auto add = [&](const std::string& k, const std::string& v) {
        if (!first) s += ",";
        first = false;
        s += k + "=\"";
        for (char c : v) {
            if (c == '"' || c == '\\') s += '\\';
            if (c == '\n') {
                s += "\\n";
                continue;
            }
            s += c;
        }
        s += "\"";
    };
    for (const auto& [k, v] : labels) add(k, v);
    if (!extra_key.empty()) add(extra_key, extra_value);
    return s + "}";
}
}  // namespace

void Registry::inc(const std::string& name, const Labels& labels, double by) {
    std::lock_guard lock(mutex_);
    values_[name][labels] += by;
}

void Registry::set(const std::string& name, const Labels& labels, double value) {
    std::lock_guard lock(mutex_);
    values_[name][labels] = value;
}

void Registry::observe(const std::string& name, const Labels& labels, double seconds) {
    std::lock_guard lock(mutex_);
    auto& h = histograms_[name][labels];
    const auto& b = latency_buckets();
    if (h.buckets.empty()) h.buckets.assign(b.size(), 0);
    for (std::size_t i = 0; i < b.size(); ++i) {
        if (seconds <= b[i]) ++h.buckets[i];
    }
    ++h.count;
    h.sum += seconds;
}

void Registry::help(const std::string& name, const std::string& type, const std::string& text) {
    std::lock_guard lock(mutex_);
    help_[name] = {type, text};
}

void Registry::gauge_fn(const std::string& name, std::function<std::vector<std::pair<Labels, double>>()> fn) {
    std::lock_guard lock(mutex_);
    gauge_fns_[name] = std::move(fn);
}

double Registry::value(const std::string& name, const Labels& labels) {
    std::lock_guard lock(mutex_);
    auto it = values_.find(name);
    if (it == values_.end()) return 0;
    auto v = it->second.find(labels);
    return v == it->second.end() ? 0 : v->second;
}

std::string Registry::render() {
    std::map<std::string, std::function<std::vector<std::pair<Labels, double>>()>> fns;
    {
        std::lock_guard lock(mutex_);
        fns = gauge_fns_;
    }
    std::map<std::string, std::vector<std::pair<Labels, double>>> computed;
    for (auto& [name, fn] : fns) computed[name] = fn();  // outside the lock: may query the store

    std::lock_guard lock(mutex_);
    std::ostringstream os;
    auto header = [&](const std::string& name, const char* fallback_type) {
        auto h = help_.find(name);
        if (h != help_.end()) {
            os << "# HELP " << name << " " << h->second.second << "\n# TYPE " << name << " " << h->second.first << "\n";
        } else {
            os << "# TYPE " << name << " " << fallback_type << "\n";
        }
    };
    for (const auto& [name, series] : values_) {
        header(name, "counter");
        for (const auto& [labels, v] : series) os << name << label_text(labels) << " " << v << "\n";
    }
    for (const auto& [name, series] : computed) {
        header(name, "gauge");
        for (const auto& [labels, v] : series) os << name << label_text(labels) << " " << v << "\n";
    }
    const auto& b = latency_buckets();
    for (const auto& [name, series] : histograms_) {
        header(name, "histogram");
        for (const auto& [labels, h] : series) {
            for (std::size_t i = 0; i < b.size(); ++i) {
                std::ostringstream le;
                le << b[i];
                os << name << "_bucket" << label_text(labels, "le", le.str()) << " " << h.buckets[i] << "\n";
            }
            os << name << "_bucket" << label_text(labels, "le", "+Inf") << " " << h.count << "\n";
            os << name << "_sum" << label_text(labels) << " " << h.sum << "\n";
            os << name << "_count" << label_text(labels) << " " << h.count << "\n";
        }
    }
    return os.str();
}

}  // namespace kw::core::metrics
