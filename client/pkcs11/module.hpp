#pragma once
// The module's state between calls. PKCS#11 is a C API with process-wide
// state by definition (C_Initialize .. C_Finalize), so there is exactly one
// Module, reached through current(); everything below it is passed
// explicitly.
#include <openssl/evp.h>

#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "client/local/client.hpp"
#include "client/pkcs11/config.hpp"
#include "client/pkcs11/mechanisms.hpp"
#include "client/pkcs11/objects.hpp"

namespace kw::pkcs11 {

inline constexpr CK_SLOT_ID kSlotId = 1;

struct MdFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

/// A sign or verify operation between its Init and its last call.
struct Operation {
    bool active = false;
    bool multi_part = false;  // an Update was called: only Final may end it
    Prepared mech;
    std::string key_name;
    std::string kid;  // verify with this version ("" = any that may verify)
    std::size_t signature_size = 0;
    std::size_t modulus_bytes = 0;
    std::unique_ptr<EVP_MD_CTX, MdFree> md;  // hash-then-sign mechanisms
    std::vector<std::uint8_t> buffer;        // HMAC and EdDSA input

    void reset() { *this = Operation{}; }
};

struct Session {
    CK_SESSION_HANDLE handle = 0;
    CK_FLAGS flags = 0;
    std::mutex mutex;  // one call at a time per session, as the spec asks of callers
    Operation sign;
    Operation verify;
    bool finding = false;
    std::vector<CK_OBJECT_HANDLE> found;
    std::size_t found_pos = 0;
};

class Module {
public:
    explicit Module(ModuleConfig config);

    [[nodiscard]] const ModuleConfig& config() const noexcept { return config_; }
    [[nodiscard]] client::LocalClient& client() noexcept { return client_; }

    /// The session, or nullptr for an unknown handle.
    [[nodiscard]] std::shared_ptr<Session> session(CK_SESSION_HANDLE h);
    CK_SESSION_HANDLE open_session(CK_FLAGS flags);
    bool close_session(CK_SESSION_HANDLE h);
    void close_all_sessions();
    [[nodiscard]] std::size_t session_count();
    [[nodiscard]] bool any_read_only_session();

    [[nodiscard]] bool logged_in();
    void set_logged_in(bool v);

    /// Re-reads the key list from keywardend (after login, at every
    /// FindObjectsInit so rotations and new keys show up). Throws client errors.
    void refresh_objects();
    /// The object, or nullptr for an unknown handle (or before login).
    [[nodiscard]] std::shared_ptr<const Object> object(CK_OBJECT_HANDLE h);
    [[nodiscard]] std::vector<CK_OBJECT_HANDLE> search(std::span<const CK_ATTRIBUTE> templ);

private:
    ModuleConfig config_;
    client::LocalClient client_;
    std::mutex mutex_;
    std::unordered_map<CK_SESSION_HANDLE, std::shared_ptr<Session>> sessions_;
    CK_SESSION_HANDLE next_session_ = 1;
    bool logged_in_ = false;
    ObjectTable objects_;
};

/// The initialised module, or nullptr (CKR_CRYPTOKI_NOT_INITIALIZED).
[[nodiscard]] Module* current();

/// The CKR code for what the client threw: keywardend unreachable ->
/// CKR_DEVICE_REMOVED; refusals by status (docs/pkcs11.md has the table).
[[nodiscard]] CK_RV rv_of(const std::exception& e);

/// Copies `s` into a blank-padded fixed-width PKCS#11 text field.
void pad(CK_UTF8CHAR* field, std::size_t width, std::string_view s);

}  // namespace kw::pkcs11
