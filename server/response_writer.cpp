#include "server/response_writer.hpp"

#include <boost/beast/http/status.hpp>

namespace kw::server {
namespace {

void append_header(std::string& out, std::string_view name, std::string_view value) {
    out.append(name).append(": ");
    for (const char c : value) out.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
    out.append("\r\n");
}

bool has_body(int status) {
    return status >= 200 && status != 204 && status != 304;
}

}  // namespace

void serialize_response(const Response& resp, unsigned version, bool keep_alive, std::string& out) {
    out.clear();
    out.append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    out.append(std::to_string(resp.status)).push_back(' ');
    const auto reason = boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(resp.status));
    out.append(reason.data(), reason.size());
    out.append("\r\n");
    append_header(out, "Server", "keywardend");
    append_header(out, "Content-Type", resp.content_type);
    for (const auto& [name, value] : resp.headers) append_header(out, name, value);
    if (version == 10 && keep_alive) append_header(out, "Connection", "keep-alive");
    if (version != 10 && !keep_alive) append_header(out, "Connection", "close");
    const bool body = has_body(resp.status);
    if (body) append_header(out, "Content-Length", std::to_string(resp.body.size()));
    out.append("\r\n");
    if (body) out.append(resp.body);
}

}  // namespace kw::server
