#include "server/verify_json.hpp"

#include <charconv>
#include <nlohmann/json.hpp>

#include "core/clock.hpp"

namespace kw::server {
namespace {

void append_int(std::string& out, std::int64_t v) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, end);
}

void append_time_or_null(std::string& out, const std::optional<core::UnixTime>& t) {
    if (t) {
        append_json_string(out, core::format_time(*t));
    } else {
        out += "null";
    }
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
            out += nlohmann::json(s).dump();
            return;
        }
    }
    out += '"';
    out += s;
    out += '"';
}

void append_verify_json(std::string& out, const VerifyAnswer& a) {
    const auto& v = a.verification;
    out += "{\"code\":";
    append_json_string(out, core::tokens::to_string(v.code));
    if (!v.name.empty()) {
        out += ",\"credits\":{\"refill\":";
        append_time_or_null(out, v.next_refill);
        out += ",\"remaining\":";
        if (v.remaining_uses) {
            append_int(out, *v.remaining_uses);
        } else {
            out += "null";
        }
        out += "},\"key\":{\"expires_at\":";
        append_time_or_null(out, v.expires_at);
        out += ",\"id\":";
        append_json_string(out, v.key_id);
        out += ",\"kid\":";
        append_json_string(out, v.kid);
        out += ",\"name\":";
        append_json_string(out, v.name);
        out += ",\"scopes\":[";
        for (std::size_t i = 0; i < v.scopes.size(); ++i) {
            if (i != 0) out += ',';
            append_json_string(out, v.scopes[i]);
        }
        out += "]}";
    }
    if (a.rate.limit != 0) {
        out += ",\"ratelimit\":{\"limit\":";
        append_int(out, a.rate.limit);
        out += ",\"remaining\":";
        append_int(out, a.rate.remaining);
        out += ",\"reset_ms\":";
        append_int(out, a.rate.reset_ms);
        if (a.limited) {
            out += ",\"retry_after_ms\":";
            append_int(out, a.rate.retry_after_ms);
        }
        out += '}';
    }
    out += ",\"valid\":";
    out += v.code == core::tokens::VerifyCode::VALID ? "true" : "false";
    out += '}';
}

}  // namespace kw::server
