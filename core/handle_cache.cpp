#include "core/handle_cache.hpp"

namespace kw::core {

std::optional<CK_OBJECT_HANDLE> HandleCache::get(const std::string& kid, std::uint64_t generation) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(kid);
    if (it == entries_.end()) return std::nullopt;
    if (it->second.generation != generation) {  // from before a fork: the object is gone
        lru_.erase(it->second.lru);
        entries_.erase(it);
        return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second.handle;
}

std::vector<CK_OBJECT_HANDLE> HandleCache::put(const std::string& kid, CK_OBJECT_HANDLE handle, bool owned,
                                               std::uint64_t generation) {
    std::lock_guard lock(mutex_);
    std::vector<CK_OBJECT_HANDLE> evicted;
    if (auto it = entries_.find(kid); it != entries_.end()) {
        if (it->second.owned && it->second.handle != handle) evicted.push_back(it->second.handle);
        lru_.erase(it->second.lru);
        entries_.erase(it);
    }
    while (entries_.size() >= capacity_) {
        auto victim = entries_.find(lru_.back());
        if (victim->second.owned) evicted.push_back(victim->second.handle);
        entries_.erase(victim);
        lru_.pop_back();
    }
    lru_.push_front(kid);
    entries_.emplace(kid, Entry{handle, owned, generation, lru_.begin()});
    return evicted;
}

std::optional<CK_OBJECT_HANDLE> HandleCache::erase(const std::string& kid) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(kid);
    if (it == entries_.end()) return std::nullopt;
    std::optional<CK_OBJECT_HANDLE> owned;
    if (it->second.owned) owned = it->second.handle;
    lru_.erase(it->second.lru);
    entries_.erase(it);
    return owned;
}

std::size_t HandleCache::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

}  // namespace kw::core
