#include "token/session_pool.hpp"

#include "token/error.hpp"

namespace kw::token {

SessionPool::SessionPool(const Module& module, CK_SLOT_ID slot, std::size_t size) {
    if (size == 0) throw TokenError(TokenErrorKind::bad_argument, "session pool size must be at least 1");
    sessions_.reserve(size);
    for (std::size_t i = 0; i < size; ++i) {
        sessions_.emplace_back(module, slot);
        free_.push_back(i);
    }
}

SessionPool::Lease SessionPool::lease() {
    std::unique_lock lock(mutex_);
    available_.wait(lock, [this] { return !free_.empty(); });
    std::size_t index = free_.back();
    free_.pop_back();
    return Lease(*this, index);
}

void SessionPool::give_back(std::size_t index) {
    {
        std::lock_guard lock(mutex_);
        free_.push_back(index);
    }
    available_.notify_one();
}

void SessionPool::rebuild_after_fork(const Module& module, CK_SLOT_ID slot) {
    std::lock_guard lock(mutex_);
    for (auto& s : sessions_) {
        s.abandon();
        s = Session(module, slot);
    }
}

}  // namespace kw::token
