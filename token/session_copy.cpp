#include "token/session_copy.hpp"

#include "token/session.hpp"
#include "token/token.hpp"

namespace kw::token {

CK_OBJECT_HANDLE SessionCopy::get(const Token& token, const Session& s) {
    std::lock_guard lock(mutex_);
    if (copy_ == CK_INVALID_HANDLE || generation_ != token.generation()) {
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE templ[] = {{CKA_TOKEN, &no, sizeof no}};
        CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
        const CK_RV rv = s.fn()->C_CopyObject(s.handle(), original_, templ, 1, &copy);
        copy_ = rv == CKR_OK ? copy : original_;
        generation_ = token.generation();
    }
    return copy_;
}

}  // namespace kw::token
