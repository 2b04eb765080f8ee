#include "core/handle_cache.hpp"

#include <algorithm>

namespace kw::core {

HandleCache::Held::~Held() {
    if (!owned_) return;
    std::lock_guard lock(graveyard_->mutex);
    graveyard_->handles.emplace_back(handle_, generation_);
}

HandleCache::Ref HandleCache::get(const std::string& kid, std::uint64_t generation) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(kid);
    if (it == entries_.end()) return nullptr;
    if (it->second.generation != generation) {  // from before a fork: the object is gone
        lru_.erase(it->second.lru);
        entries_.erase(it);
        return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second.ref;
}

HandleCache::Ref HandleCache::put(const std::string& kid, CK_OBJECT_HANDLE handle, bool owned,
                                  std::uint64_t generation) {
    auto mine = std::make_shared<const Held>(handle, owned, generation, graveyard_);
    std::lock_guard lock(mutex_);
    if (auto it = entries_.find(kid); it != entries_.end()) {
        if (it->second.generation == generation) {
            lru_.splice(lru_.begin(), lru_, it->second.lru);
            return it->second.ref;  // `mine` is retired as it goes out of scope
        }
        lru_.erase(it->second.lru);
        entries_.erase(it);
    }
    while (entries_.size() >= capacity_) {
        entries_.erase(lru_.back());
        lru_.pop_back();
    }
    lru_.push_front(kid);
    entries_.emplace(kid, Entry{mine, generation, lru_.begin()});
    return mine;
}

void HandleCache::erase(const std::string& kid) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(kid);
    if (it == entries_.end()) return;
    lru_.erase(it->second.lru);
    entries_.erase(it);
}

std::vector<CK_OBJECT_HANDLE> HandleCache::take_retired(std::uint64_t generation) {
    std::lock_guard lock(graveyard_->mutex);
    std::vector<CK_OBJECT_HANDLE> out;
    for (const auto& [h, g] : graveyard_->handles) {
        if (g == generation) out.push_back(h);  // older ones died with the pre-fork sessions
    }
    graveyard_->handles.clear();
    return out;
}

std::size_t HandleCache::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

}  // namespace kw::core
