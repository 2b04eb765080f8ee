#pragma once
// Where the user PIN comes from. Never argv: the environment, a file (first
// line, 0600 recommended), or an interactive prompt with echo off.
#include <optional>
#include <string>

#include "token/secret.hpp"

namespace kw::token {

struct PinSource {
    std::string env_var = "KEYWARDEN_PIN";  // checked first
    std::optional<std::string> file;        // then this file
    bool allow_prompt = false;              // then the terminal, if stdin is one
};

/// Reads the PIN; throws TokenError(pin_unavailable) when no source has one.
/// The environment variable is left in place (child processes such as tests
/// rely on it); callers that exec untrusted code should unset it.
[[nodiscard]] SecretString read_pin(const PinSource& source, const std::string& prompt = "User PIN: ");

}  // namespace kw::token
