#include "core/tokens/usage.hpp"

#include <algorithm>
#include <vector>

#include "core/error.hpp"
#include "core/thread_name.hpp"

namespace kw::core::tokens {

UsageAccumulator::UsageAccumulator(Store& store, std::chrono::milliseconds interval)
    : store_(store), interval_(interval) {
    if (interval_.count() <= 0) throw Error(ErrorKind::invalid_argument, "usage flush interval must be positive");
    flusher_ = std::thread([this] {
        name_this_thread("kw-usage-flush");
        run();
    });
}

UsageAccumulator::~UsageAccumulator() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (flusher_.joinable()) flusher_.join();
    try {
        flush();
    } catch (...) {  // nothing to report to from a destructor; the loss is the documented bound
    }
}

void UsageAccumulator::add(std::string_view kid, UnixTime at) {
    std::lock_guard lock(mutex_);
    auto it = pending_.find(kid);
    if (it == pending_.end()) it = pending_.emplace(std::string(kid), TokenUsage{std::string(kid), 0, at}).first;
    ++it->second.uses;
    it->second.last_used_at = std::max(it->second.last_used_at, at);
}

void UsageAccumulator::flush() {
    std::lock_guard flushing(flush_mutex_);
    std::vector<TokenUsage> batch;
    {
        std::lock_guard lock(mutex_);
        batch.reserve(pending_.size());
        for (auto& [kid, u] : pending_) batch.push_back(std::move(u));
        pending_.clear();
    }
    if (batch.empty()) return;
    try {
        store_.add_token_uses(batch);
    } catch (...) {
        // Keep the counts: merge them back under whatever arrived meanwhile.
        std::lock_guard lock(mutex_);
        ++failed_flushes_;
        for (auto& u : batch) {
            auto [it, inserted] = pending_.try_emplace(u.kid, u);
            if (!inserted) {
                it->second.uses += u.uses;
                it->second.last_used_at = std::max(it->second.last_used_at, u.last_used_at);
            }
        }
        throw;
    }
}

std::optional<TokenRecord> UsageAccumulator::record(std::string_view kid) {
    // Under flush_mutex_ no batch is between "taken from pending_" and
    // "committed", so store + pending_ counts every use exactly once.
    std::lock_guard flushing(flush_mutex_);
    auto rec = store_.token_record(kid);
    if (!rec) return rec;
    std::lock_guard lock(mutex_);
    if (auto it = pending_.find(kid); it != pending_.end()) {
        rec->uses += it->second.uses;
        rec->last_used_at = std::max(rec->last_used_at.value_or(it->second.last_used_at), it->second.last_used_at);
    }
    return rec;
}

std::uint64_t UsageAccumulator::failed_flushes() const {
    std::lock_guard lock(mutex_);
    return failed_flushes_;
}

void UsageAccumulator::run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        if (wake_.wait_for(lock, interval_, [&] { return stopping_; })) return;
        lock.unlock();
        try {
            flush();
        } catch (...) {  // counted in failed_flushes_; retried next interval
        }
        lock.lock();
    }
}

}  // namespace kw::core::tokens
