#include "token/session.hpp"

#include <utility>

#include "token/error.hpp"

namespace kw::token {

Session::Session(const Module& module, CK_SLOT_ID slot) : fn_(module.fn()) {
    check("C_OpenSession", fn_->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &handle_));
}

Session::~Session() {
    if (handle_ != CK_INVALID_HANDLE) fn_->C_CloseSession(handle_);
}

Session::Session(Session&& other) noexcept : fn_(other.fn_), handle_(std::exchange(other.handle_, CK_INVALID_HANDLE)) {}

Session& Session::operator=(Session&& other) noexcept {
    if (this != &other) {
        if (handle_ != CK_INVALID_HANDLE) fn_->C_CloseSession(handle_);
        fn_ = other.fn_;
        handle_ = std::exchange(other.handle_, CK_INVALID_HANDLE);
    }
    return *this;
}

}  // namespace kw::token
