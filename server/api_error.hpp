#pragma once
// Errors the HTTP API answers with: a status and a stable code, rendered as
// {"error": {"code": "...", "message": "..."}}. Handlers throw ApiError; the
// router maps core and token errors to ApiErrors in one place.
#include <stdexcept>
#include <string>

namespace kw::server {

class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string code, const std::string& message)
        : std::runtime_error(message), status_(status), code_(std::move(code)) {}
    [[nodiscard]] int status() const noexcept { return status_; }
    [[nodiscard]] const std::string& code() const noexcept { return code_; }

private:
    int status_;
    std::string code_;
};

}  // namespace kw::server
