#include "server/request.hpp"

#include <algorithm>

namespace kw::server {

nlohmann::json parse_body(const Request& r, std::initializer_list<std::string_view> allowed) {
    if (r.body.empty()) {
        if (allowed.size() == 0) return nlohmann::json::object();
        throw ApiError(400, "EMPTY_BODY", "this endpoint wants a JSON object body");
    }
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded()) throw ApiError(400, "BAD_JSON", "the body is not valid JSON");
    if (!j.is_object()) throw ApiError(400, "BAD_TYPE", "the body must be a JSON object");
    for (const auto& [k, v] : j.items()) {
        if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
            throw ApiError(400, "UNKNOWN_FIELD", "unknown field '" + k + "'");
        }
    }
    return j;
}

std::string require_string(const nlohmann::json& j, const char* field) {
    if (!j.contains(field)) throw ApiError(400, "MISSING_FIELD", std::string("field '") + field + "' is required");
    if (!j[field].is_string()) throw ApiError(400, "BAD_TYPE", std::string("field '") + field + "' must be a string");
    return j[field].get<std::string>();
}

std::optional<std::string> optional_string(const nlohmann::json& j, const char* field) {
    if (!j.contains(field) || j[field].is_null()) return std::nullopt;
    if (!j[field].is_string()) throw ApiError(400, "BAD_TYPE", std::string("field '") + field + "' must be a string");
    return j[field].get<std::string>();
}

std::optional<std::int64_t> optional_int(const nlohmann::json& j, const char* field) {
    if (!j.contains(field) || j[field].is_null()) return std::nullopt;
    if (!j[field].is_number_integer())
        throw ApiError(400, "BAD_TYPE", std::string("field '") + field + "' must be an integer");
    return j[field].get<std::int64_t>();
}

}  // namespace kw::server
