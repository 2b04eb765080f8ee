#pragma once
// Typed errors of the token layer.
//
// Every failing PKCS#11 call becomes a Pkcs11Error that names the function and
// the CKR_* code (e.g. "C_Login: CKR_PIN_INCORRECT"), so logs and exit codes
// never show a bare number. Problems that are not a CK_RV (module missing,
// token not found, bad PIN source) are TokenError.
#include <stdexcept>
#include <string>
#include <string_view>

#include "token/pkcs11.hpp"

namespace kw::token {

/// Name of a CK_RV ("CKR_PIN_INCORRECT"), or "CKR_0x..." for vendor codes.
[[nodiscard]] std::string rv_name(CK_RV rv);

class Pkcs11Error : public std::runtime_error {
public:
    Pkcs11Error(std::string_view function, CK_RV rv);
    [[nodiscard]] CK_RV rv() const noexcept { return rv_; }
    [[nodiscard]] const std::string& function() const noexcept { return function_; }
    [[nodiscard]] std::string name() const { return rv_name(rv_); }

private:
    CK_RV rv_;
    std::string function_;
};

enum class TokenErrorKind {
    module_load,      // dlopen or C_GetFunctionList failed
    token_not_found,  // no slot matches label / serial / URI
    pin_unavailable,  // no PIN in the environment, file or prompt
    bad_argument,     // caller asked for something the layer does not do
};

class TokenError : public std::runtime_error {
public:
    TokenError(TokenErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
    [[nodiscard]] TokenErrorKind kind() const noexcept { return kind_; }

private:
    TokenErrorKind kind_;
};

/// Throws Pkcs11Error unless rv is CKR_OK.
inline void check(std::string_view function, CK_RV rv) {
    if (rv != CKR_OK) throw Pkcs11Error(function, rv);
}

}  // namespace kw::token
