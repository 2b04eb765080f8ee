#pragma once
// One PKCS#11 session, closed when the object dies. Move-only.
#include "token/module.hpp"

namespace kw::token {

class Session {
public:
    /// Opens a read/write serial session on `slot`.
    Session(const Module& module, CK_SLOT_ID slot);
    ~Session();
    Session(Session&& other) noexcept;
    Session& operator=(Session&& other) noexcept;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    [[nodiscard]] CK_SESSION_HANDLE handle() const noexcept { return handle_; }
    [[nodiscard]] CK_FUNCTION_LIST* fn() const noexcept { return fn_; }

    /// Forgets the handle without C_CloseSession (used after fork, where the
    /// parent's handles mean nothing to the child's library state).
    void abandon() noexcept { handle_ = CK_INVALID_HANDLE; }

private:
    CK_FUNCTION_LIST* fn_ = nullptr;
    CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
};

}  // namespace kw::token
