#pragma once
// Errors of the core layer, with a kind the faces map to exit codes and HTTP
// statuses. Token-layer errors (Pkcs11Error, TokenError) pass through as they are.
#include <stdexcept>
#include <string>

namespace kw::core {

enum class ErrorKind {
    not_found,         // unknown key or version
    already_exists,    // name taken
    invalid_argument,  // bad type/size/curve/alg, malformed input
    not_permitted,     // the key's state or expiry forbids the operation
    store_locked,      // another process holds the store (SQLITE_BUSY)
    store_failure,     // I/O, corruption, migration failure
    not_initialized,   // root keys missing: run `hsm-keytool init`
    config,            // bad configuration file
    audit_failure,     // the audit event could not be written: the operation is refused
};

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
    [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

}  // namespace kw::core
