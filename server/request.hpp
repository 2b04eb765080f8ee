#pragma once
// The parts of an HTTP request and response handlers see, independent of
// Beast, plus strict JSON body access.
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "server/api_error.hpp"

namespace kw::server {

struct Request {
    std::string method;
    std::string target;  // path without the query
    std::map<std::string, std::string> query;
    std::string body;
    std::string authorization;  // raw Authorization header
    std::string peer;           // "tcp:1.2.3.4" or "unix"
};

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::map<std::string, std::string> headers;

    static Response json(const nlohmann::json& j, int status = 200) {
        return Response{status, "application/json", j.dump() + "\n", {}};
    }
};

/// Parses a JSON object body and rejects fields outside `allowed` (a
/// short list, searched in order: no set is built per request).
nlohmann::json parse_body(const Request& r, std::initializer_list<std::string_view> allowed);

/// Typed field access with 400 BAD_TYPE / MISSING_FIELD errors.
std::string require_string(const nlohmann::json& j, const char* field);
std::optional<std::string> optional_string(const nlohmann::json& j, const char* field);
std::optional<std::int64_t> optional_int(const nlohmann::json& j, const char* field);

}  // namespace kw::server
