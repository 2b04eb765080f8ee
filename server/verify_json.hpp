#pragma once
// The JSON answer of one token verification, written straight into the
// response body.
//
// Why not nlohmann::json: building this small object as a tree of maps and
// dumping it cost about 3 us per verification here (measured with
// jemalloc), a tenth of keywardend's CPU per request; writing it directly
// costs a fraction of that. The output is byte for byte what nlohmann's
// dump() gives for the same object (keys in sorted order, the same string
// escapes), which tests/unit_test.cpp checks.
#include <string>
#include <string_view>

#include "core/ratelimit/gcra.hpp"
#include "core/tokens/token_service.hpp"

namespace kw::server {

struct VerifyAnswer {
    core::tokens::Verification verification;
    core::ratelimit::Decision rate;  // rate.limit == 0: no limit applied
    bool limited = false;            // the rate limit denied this request
};

/// Appends `s` as a JSON string literal. Printable ASCII without quotes or
/// backslashes is copied as is; anything else is escaped by nlohmann::json,
/// so invalid UTF-8 throws as dump() does.
void append_json_string(std::string& out, std::string_view s);

/// Appends the answer's JSON object:
/// {"code", "credits"?, "key"?, "ratelimit"?, "valid"} (credits and key when
/// the token was found, ratelimit when a limit applies).
void append_verify_json(std::string& out, const VerifyAnswer& a);

}  // namespace kw::server
