#include "token/pin.hpp"

#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "token/error.hpp"

namespace kw::token {
namespace {

void strip_newline(std::string& s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
}

std::optional<SecretString> prompt_for(const std::string& prompt) {
    if (isatty(STDIN_FILENO) == 0) return std::nullopt;
    termios old{};
    if (tcgetattr(STDIN_FILENO, &old) != 0) return std::nullopt;
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    std::cerr << prompt << std::flush;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    std::string line;
    std::getline(std::cin, line);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    std::cerr << '\n';
    strip_newline(line);
    SecretString pin(std::move(line));
    return pin;
}

}  // namespace

SecretString read_pin(const PinSource& source, const std::string& prompt) {
    if (const char* value = std::getenv(source.env_var.c_str()); value != nullptr && *value != '\0') {
        return SecretString(value);
    }
    if (source.file) {
        std::ifstream in(*source.file);
        if (!in) throw TokenError(TokenErrorKind::pin_unavailable, "cannot read PIN file " + *source.file);
        std::string line;
        std::getline(in, line);
        strip_newline(line);
        if (line.empty()) throw TokenError(TokenErrorKind::pin_unavailable, "PIN file " + *source.file + " is empty");
        return SecretString(std::move(line));
    }
    if (source.allow_prompt) {
        if (auto pin = prompt_for(prompt)) return std::move(*pin);
    }
    throw TokenError(TokenErrorKind::pin_unavailable,
                     "no PIN: set " + source.env_var + ", a pin_file in the config, or KEYWARDEN_PIN_FILE");
}

}  // namespace kw::token
