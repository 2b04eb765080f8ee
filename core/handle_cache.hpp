#pragma once
// kid -> object handle of the key's working copy in the token: an unwrapped,
// non-extractable session object (wrapped residency, owned) or a token object
// found once by CKA_ID (token residency, not owned). Bounded LRU; entries
// from before a fork (older token generation) are treated as absent.
//
// Handles are shared, not lent: get() and put() return a Ref that keeps the
// handle alive while a thread signs with it. An owned object that leaves the
// cache (evicted, replaced, erased) is *retired* only once its last Ref is
// gone, and the next caller that holds a session destroys it
// (take_retired). So no thread ever signs with an object another thread
// destroyed.
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "token/pkcs11.hpp"

namespace kw::core {

class HandleCache {
    struct Graveyard;

public:
    class Held {
    public:
        Held(CK_OBJECT_HANDLE handle, bool owned, std::uint64_t generation, std::shared_ptr<Graveyard> graveyard)
            : handle_(handle), owned_(owned), generation_(generation), graveyard_(std::move(graveyard)) {}
        ~Held();
        Held(const Held&) = delete;
        Held& operator=(const Held&) = delete;
        [[nodiscard]] CK_OBJECT_HANDLE handle() const noexcept { return handle_; }

    private:
        CK_OBJECT_HANDLE handle_;
        bool owned_;
        std::uint64_t generation_;
        std::shared_ptr<Graveyard> graveyard_;
    };
    using Ref = std::shared_ptr<const Held>;

    explicit HandleCache(std::size_t capacity)
        : capacity_(capacity == 0 ? 1 : capacity), graveyard_(std::make_shared<Graveyard>()) {}

    /// The cached handle for `kid`, or null.
    [[nodiscard]] Ref get(const std::string& kid, std::uint64_t generation);
    /// Caches `handle` for `kid` and returns it, unless another thread cached
    /// one for `kid` first: then that one is returned and an owned `handle`
    /// is retired.
    [[nodiscard]] Ref put(const std::string& kid, CK_OBJECT_HANDLE handle, bool owned, std::uint64_t generation);
    /// Drops `kid` (an owned object is retired once unused).
    void erase(const std::string& kid);
    /// Owned objects of this generation that are out of the cache and no
    /// longer used: the caller destroys them (it holds a session to do so).
    [[nodiscard]] std::vector<CK_OBJECT_HANDLE> take_retired(std::uint64_t generation);
    [[nodiscard]] std::size_t size() const;

private:
    struct Graveyard {
        std::mutex mutex;
        std::vector<std::pair<CK_OBJECT_HANDLE, std::uint64_t>> handles;  // with their generation
    };
    struct Entry {
        Ref ref;
        std::uint64_t generation;
        std::list<std::string>::iterator lru;
    };
    std::size_t capacity_;
    std::shared_ptr<Graveyard> graveyard_;
    mutable std::mutex mutex_;
    std::list<std::string> lru_;  // front = most recent
    std::unordered_map<std::string, Entry> entries_;
};

}  // namespace kw::core
