#include "token/session_copy.hpp"

#include "token/session.hpp"
#include "token/token.hpp"

namespace kw::token {

CK_OBJECT_HANDLE SessionCopy::get(const Token& token, const Session& s) {
    const std::uint64_t current = token.generation();
    if (generation_.load(std::memory_order_acquire) == current) {
        const CK_OBJECT_HANDLE copy = copy_.load(std::memory_order_acquire);
        if (copy != CK_INVALID_HANDLE) return copy;
    }
    std::lock_guard lock(mutex_);
    if (copy_.load() == CK_INVALID_HANDLE || generation_.load() != current) {
        // Invalidate first, so a reader never pairs the new generation with
        // a handle from before the fork.
        copy_.store(CK_INVALID_HANDLE);
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE templ[] = {{CKA_TOKEN, &no, sizeof no}};
        CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
        const CK_RV rv = s.fn()->C_CopyObject(s.handle(), original_, templ, 1, &copy);
        generation_.store(current);
        copy_.store(rv == CKR_OK ? copy : original_);
    }
    return copy_.load();
}

}  // namespace kw::token
