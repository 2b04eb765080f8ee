#pragma once
// A fixed set of open sessions shared by threads. lease() blocks until one is
// free and gives it back when the Lease dies.
//
// The pool's sessions stay open for its whole life on purpose: session objects
// (unwrapped keys) live as long as the session that created them, and the
// handle cache above relies on that. The size is a setting because SoftHSM
// serialises on global locks: more sessions than cores rarely helps.
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <vector>

#include "token/session.hpp"

namespace kw::token {

class SessionPool {
public:
    class Lease {
    public:
        Lease(SessionPool& pool, std::size_t index) : pool_(&pool), index_(index) {}
        ~Lease() {
            if (pool_ != nullptr) pool_->give_back(index_);
        }
        Lease(Lease&& other) noexcept : pool_(other.pool_), index_(other.index_) { other.pool_ = nullptr; }
        Lease& operator=(Lease&&) = delete;
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;

        [[nodiscard]] Session& session() const { return pool_->sessions_[index_]; }
        Session* operator->() const { return &session(); }

    private:
        SessionPool* pool_;
        std::size_t index_;
    };

    SessionPool(const Module& module, CK_SLOT_ID slot, std::size_t size);

    [[nodiscard]] Lease lease();
    [[nodiscard]] std::size_t size() const noexcept { return sessions_.size(); }
    /// After fork: drop every session without closing it, then open new ones.
    void rebuild_after_fork(const Module& module, CK_SLOT_ID slot);

private:
    void give_back(std::size_t index);

    std::vector<Session> sessions_;
    std::vector<std::size_t> free_;
    std::mutex mutex_;
    std::condition_variable available_;
};

}  // namespace kw::token
