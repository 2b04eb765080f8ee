#include "core/wire/protocol.hpp"

namespace kw::wire {

std::string_view to_string(Status s) {
    switch (s) {
        case Status::ok: return "OK";
        case Status::bad_request: return "BAD_REQUEST";
        case Status::not_authenticated: return "NOT_AUTHENTICATED";
        case Status::auth_failed: return "AUTH_FAILED";
        case Status::auth_expired: return "AUTH_EXPIRED";
        case Status::forbidden: return "FORBIDDEN";
        case Status::unknown_key: return "UNKNOWN_KEY";
        case Status::key_not_usable: return "KEY_NOT_USABLE";
        case Status::key_expired: return "KEY_EXPIRED";
        case Status::rate_limited: return "RATE_LIMITED";
        case Status::mechanism_invalid: return "MECHANISM_INVALID";
        case Status::data_invalid: return "DATA_INVALID";
        case Status::audit_failure: return "AUDIT_FAILURE";
        case Status::unavailable: return "UNAVAILABLE";
        case Status::internal: return "INTERNAL";
        case Status::version_mismatch: return "VERSION_MISMATCH";
    }
    return "UNKNOWN";
}

}  // namespace kw::wire
