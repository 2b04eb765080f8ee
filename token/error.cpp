#include "token/error.hpp"

#include <cstdio>

#include "token/rv_names.inc"

namespace kw::token {

std::string rv_name(CK_RV rv) {
    for (const auto& entry : detail::kRvNames) {
        if (entry.rv == rv) return entry.name;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "CKR_0x%08lx", static_cast<unsigned long>(rv));
    return buf;
}

Pkcs11Error::Pkcs11Error(std::string_view function, CK_RV rv)
    : std::runtime_error(std::string(function) + ": " + rv_name(rv)), rv_(rv), function_(function) {}

}  // namespace kw::token
