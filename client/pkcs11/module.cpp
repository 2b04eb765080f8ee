#include "client/pkcs11/module.hpp"

#include <cstring>

namespace kw::pkcs11 {

Module::Module(ModuleConfig config)
    : config_(std::move(config)), client_(config_.socket, "pkcs11:" + std::to_string(::getpid())) {}

std::shared_ptr<Session> Module::session(CK_SESSION_HANDLE h) {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(h);
    return it == sessions_.end() ? nullptr : it->second;
}

CK_SESSION_HANDLE Module::open_session(CK_FLAGS flags) {
    std::lock_guard lock(mutex_);
    auto s = std::make_shared<Session>();
    s->handle = next_session_++;
    s->flags = flags;
    sessions_[s->handle] = s;
    return s->handle;
}

bool Module::close_session(CK_SESSION_HANDLE h) {
    std::lock_guard lock(mutex_);
    if (sessions_.erase(h) == 0) return false;
    // The login state belongs to the application: closing its last session logs it out.
    if (sessions_.empty() && logged_in_) {
        logged_in_ = false;
        objects_.clear();
        client_.logout();
    }
    return true;
}

void Module::close_all_sessions() {
    std::lock_guard lock(mutex_);
    sessions_.clear();
    if (logged_in_) {
        logged_in_ = false;
        objects_.clear();
        client_.logout();
    }
}

std::size_t Module::session_count() {
    std::lock_guard lock(mutex_);
    return sessions_.size();
}

bool Module::any_read_only_session() {
    std::lock_guard lock(mutex_);
    for (const auto& [h, s] : sessions_) {
        if ((s->flags & CKF_RW_SESSION) == 0) return true;
    }
    return false;
}

bool Module::logged_in() {
    std::lock_guard lock(mutex_);
    return logged_in_;
}

void Module::set_logged_in(bool v) {
    std::lock_guard lock(mutex_);
    logged_in_ = v;
    if (!v) objects_.clear();
}

void Module::refresh_objects() {
    auto keys = client_.list_keys();  // outside the lock: a round trip
    std::lock_guard lock(mutex_);
    if (logged_in_) objects_.refresh(keys);
}

std::shared_ptr<const Object> Module::object(CK_OBJECT_HANDLE h) {
    std::lock_guard lock(mutex_);
    return objects_.find(h);
}

std::vector<CK_OBJECT_HANDLE> Module::search(std::span<const CK_ATTRIBUTE> templ) {
    std::lock_guard lock(mutex_);
    return objects_.search(templ);
}

CK_RV rv_of(const std::exception& e) {
    if (dynamic_cast<const client::ConnectionError*>(&e) != nullptr) return CKR_DEVICE_REMOVED;
    if (const auto* r = dynamic_cast<const client::RefusedError*>(&e)) {
        using S = wire::Status;
        switch (r->status()) {
            case S::not_authenticated:
            case S::auth_failed: return CKR_USER_NOT_LOGGED_IN;
            case S::auth_expired: return CKR_PIN_EXPIRED;
            case S::forbidden:
            case S::key_not_usable:
            case S::key_expired: return CKR_KEY_FUNCTION_NOT_PERMITTED;
            case S::unknown_key: return CKR_KEY_HANDLE_INVALID;
            case S::rate_limited: return CKR_FUNCTION_REJECTED;
            case S::mechanism_invalid: return CKR_KEY_TYPE_INCONSISTENT;
            case S::data_invalid: return CKR_DATA_LEN_RANGE;
            case S::audit_failure: return CKR_DEVICE_ERROR;
            case S::unavailable: return CKR_DEVICE_REMOVED;
            case S::bad_request:
            case S::version_mismatch:
            case S::internal:
            case S::ok: return CKR_FUNCTION_FAILED;
        }
    }
    if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) return CKR_HOST_MEMORY;
    return CKR_FUNCTION_FAILED;
}

void pad(CK_UTF8CHAR* field, std::size_t width, std::string_view s) {
    std::memset(field, ' ', width);
    std::memcpy(field, s.data(), std::min(width, s.size()));
}

}  // namespace kw::pkcs11
