#pragma once
// kid -> object handle of the key's working copy in the token: an unwrapped,
// non-extractable session object (wrapped residency, owned: destroyed on
// eviction) or a token object found once by CKA_ID (token residency, not
// owned). Bounded LRU; entries from before a fork (older token generation)
// are treated as absent.
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "token/pkcs11.hpp"

namespace kw::core {

class HandleCache {
public:
    explicit HandleCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

    [[nodiscard]] std::optional<CK_OBJECT_HANDLE> get(const std::string& kid, std::uint64_t generation);
    /// Inserts; returns session objects evicted to make room, which the caller
    /// must destroy (it holds the session to do so).
    [[nodiscard]] std::vector<CK_OBJECT_HANDLE> put(const std::string& kid, CK_OBJECT_HANDLE handle, bool owned,
                                                    std::uint64_t generation);
    /// Removes a kid; returns its handle if it was an owned session object.
    [[nodiscard]] std::optional<CK_OBJECT_HANDLE> erase(const std::string& kid);
    [[nodiscard]] std::size_t size() const;

private:
    struct Entry {
        CK_OBJECT_HANDLE handle;
        bool owned;
        std::uint64_t generation;
        std::list<std::string>::iterator lru;
    };
    std::size_t capacity_;
    mutable std::mutex mutex_;
    std::list<std::string> lru_;  // front = most recent
    std::unordered_map<std::string, Entry> entries_;
};

}  // namespace kw::core
