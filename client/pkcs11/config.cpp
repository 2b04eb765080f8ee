#include "client/pkcs11/config.hpp"

#include <toml++/toml.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace kw::pkcs11 {

ModuleConfig load_module_config() {
    ModuleConfig c;
    std::string path = "/etc/keywarden/pkcs11.conf";
    const char* named = std::getenv("KEYWARDEN_PKCS11_CONFIG");
    if (named != nullptr && *named != '\0') {
        path = named;
    } else if (!std::filesystem::exists(path)) {
        path.clear();
    }
    if (!path.empty()) {
        toml::table t;
        try {
            t = toml::parse_file(path);
        } catch (const toml::parse_error& e) {
            throw std::runtime_error(path + ":" + std::to_string(e.source().begin.line) + ": " +
                                     std::string(e.description()));
        }
        for (const auto& [key, value] : t) {
            if (key != "socket" && key != "token_label") {
                throw std::runtime_error(path + ": unknown setting '" + std::string(key.str()) + "'");
            }
            if (!value.is_string())
                throw std::runtime_error(path + ": '" + std::string(key.str()) + "' must be a string");
        }
        if (auto s = t["socket"].value<std::string>()) c.socket = *s;
        if (auto s = t["token_label"].value<std::string>()) c.token_label = *s;
    }
    if (const char* s = std::getenv("KEYWARDEN_LOCAL_SOCKET"); s != nullptr && *s != '\0') c.socket = s;
    if (c.token_label.empty() || c.token_label.size() > 32) {
        throw std::runtime_error("token_label must be 1 to 32 characters");
    }
    return c;
}

}  // namespace kw::pkcs11
