#pragma once
// Errors the HTTP API answers with: a status and a stable code, rendered as
// {"error": {"code": "...", "message": "..."}}. Handlers throw ApiError; the
// router maps core and token errors to ApiErrors in one place.
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace kw::server {

class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string code, const std::string& message)
        : std::runtime_error(message), status_(status), code_(std::move(code)) {}
    [[nodiscard]] int status() const noexcept { return status_; }
    [[nodiscard]] const std::string& code() const noexcept { return code_; }

    /// A response header to send with the error (Retry-After, RateLimit-*).
    ApiError& header(const std::string& name, std::string value) {
        headers_[name] = std::move(value);
        return *this;
    }
    /// A field next to "error" in the answer, e.g. "ratelimit".
    ApiError& field(const std::string& name, nlohmann::json value) {
        fields_[name] = std::move(value);
        return *this;
    }
    [[nodiscard]] const std::map<std::string, std::string>& headers() const noexcept { return headers_; }
    [[nodiscard]] const nlohmann::json& fields() const noexcept { return fields_; }

private:
    int status_;
    std::string code_;
    std::map<std::string, std::string> headers_;
    nlohmann::json fields_ = nlohmann::json::object();
};

}  // namespace kw::server
