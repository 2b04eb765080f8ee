#pragma once
// Where the module finds keywardend, and what its token is called.
//
// Read from the file named by KEYWARDEN_PKCS11_CONFIG, else from
// /etc/keywarden/pkcs11.conf if it exists (TOML):
//
//   socket = "/run/keywarden/local.sock"   # keywardend [server] local_socket
//   token_label = "keywarden"
//
// KEYWARDEN_LOCAL_SOCKET overrides `socket`.
#include <optional>
#include <string>

namespace kw::pkcs11 {

struct ModuleConfig {
    std::string socket = "/run/keywarden/local.sock";
    std::string token_label = "keywarden";
};

/// Throws std::runtime_error with "FILE: reason" for an unreadable or bad file.
[[nodiscard]] ModuleConfig load_module_config();

}  // namespace kw::pkcs11
