#pragma once
// Object handles and attribute access.
//
// ObjectHandle owns a *session* object (an unwrapped key, a freshly generated
// key before it is wrapped) and destroys it when dropped unless release()d;
// token objects are not owned. The attribute helpers read single attributes
// and map CKR_ATTRIBUTE_SENSITIVE and friends to Pkcs11Error by name.
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "token/session.hpp"

namespace kw::token {

class ObjectHandle {
public:
    ObjectHandle() = default;
    ObjectHandle(const Session& session, CK_OBJECT_HANDLE handle)
        : fn_(session.fn()), session_(session.handle()), handle_(handle) {}
    ~ObjectHandle() { destroy(); }
    ObjectHandle(ObjectHandle&& other) noexcept : fn_(other.fn_), session_(other.session_), handle_(other.release()) {}
    ObjectHandle& operator=(ObjectHandle&& other) noexcept {
        if (this != &other) {
            destroy();
            fn_ = other.fn_;
            session_ = other.session_;
            handle_ = other.release();
        }
        return *this;
    }
    ObjectHandle(const ObjectHandle&) = delete;
    ObjectHandle& operator=(const ObjectHandle&) = delete;

    [[nodiscard]] CK_OBJECT_HANDLE get() const noexcept { return handle_; }
    /// Stops owning the object (it lives on) but keeps referring to it.
    void disown() noexcept { fn_ = nullptr; }
    /// Gives up ownership and the handle; the object lives on.
    CK_OBJECT_HANDLE release() noexcept {
        CK_OBJECT_HANDLE h = handle_;
        handle_ = CK_INVALID_HANDLE;
        return h;
    }

private:
    void destroy() noexcept {
        if (handle_ != CK_INVALID_HANDLE && fn_ != nullptr) fn_->C_DestroyObject(session_, handle_);
        handle_ = CK_INVALID_HANDLE;
    }
    CK_FUNCTION_LIST* fn_ = nullptr;
    CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE handle_ = CK_INVALID_HANDLE;
};

/// Raw value of one attribute. Throws Pkcs11Error("C_GetAttributeValue",
/// CKR_ATTRIBUTE_SENSITIVE) for secret values, as the token reports.
[[nodiscard]] std::vector<std::uint8_t> get_attribute(const Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);
[[nodiscard]] bool get_bool(const Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);
[[nodiscard]] CK_ULONG get_ulong(const Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);

/// C_FindObjects over a template. A linear scan in SoftHSM: only for start-up
/// (root keys) and benchmarks, never on a hot path.
[[nodiscard]] std::vector<CK_OBJECT_HANDLE> find_objects(const Session& s, std::span<CK_ATTRIBUTE> templ,
                                                         std::size_t max = 64);

void destroy_object(const Session& s, CK_OBJECT_HANDLE h);

}  // namespace kw::token
