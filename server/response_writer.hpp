#pragma once
// An HTTP/1.1 response as the bytes sent on the wire.
//
// Why not Beast's serializer: building an http::response (a heap node per
// header field) and walking it with a buffers_cat serializer cost about
// 3 us per request, a tenth of a token verification's CPU here
// (docs/performance.md). A response is a status line, a handful of headers
// this server chose itself, and a body already in memory: one string, one
// write. Requests are still parsed by Beast.
#include <string>

#include "server/request.hpp"

namespace kw::server {

/// Appends to `out` (cleared first) the response with Server, Content-Type,
/// Content-Length (omitted, with the body, for 1xx, 204 and 304), the
/// handler's headers, and the Connection header `version` (10 or 11) and
/// `keep_alive` call for. CR, LF and NUL in a header value become spaces:
/// a header can never be split, whatever a handler put in it.
void serialize_response(const Response& resp, unsigned version, bool keep_alive, std::string& out);

}  // namespace kw::server
