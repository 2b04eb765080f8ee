#pragma once
// What the C++ keywardend tests share: where the daemon listens (from the
// environment tests/server_http_test.sh sets), clients for it, a few JSON and
// time helpers, and the keys and tokens most test cases use.
//
//   KW_HTTP_HOST, KW_HTTP_PORT   the TCP listener
//   KW_HTTP_SOCKET               the unix socket
//   KW_ADMIN_TOKEN_FILE          a file holding an admin token (never on argv)
//   KW_REQUEST_TIMEOUT_S         the daemon's per-request deadline (default 10)
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/http_client.hpp"

namespace kw::test {

struct ServerEnv {
    std::string host;
    std::uint16_t port = 0;
    std::string socket;
    std::string admin;  // the admin token
    int request_timeout_s = 10;
};

/// Read once; throws when the wrapper did not set the environment.
const ServerEnv& server_env();

HttpClient tcp_client();
HttpClient unix_client();

/// One request on a fresh TCP connection, for checks that do not care about
/// the connection.
HttpResponse call(std::string_view method, std::string_view target, std::string_view body = {},
                  std::string_view bearer = {});
inline HttpResponse call(std::string_view method, std::string_view target, const nlohmann::json& body,
                         std::string_view bearer = {}) {
    return call(method, target, std::string_view(body.dump()), bearer);
}

inline HttpResponse call_get(std::string_view target, std::string_view bearer = {}) {
    return call("GET", target, std::string_view(), bearer);
}

/// An admin call that must answer `want`; throws with the body otherwise.
nlohmann::json admin_call(std::string_view method, std::string_view target, const nlohmann::json& body = nullptr,
                          int want = 200);

/// Issues an API token through the admin API; returns the full answer
/// (token, versions[0].kid, ...).
nlohmann::json issue_token(const nlohmann::json& request);

/// A well-formed token (right checksum) that nobody issued.
std::string unknown_token();

std::string b64(std::string_view bytes);
std::string b64url_decode(std::string_view text);

/// "2026-11-25T14:55:15Z" -> Unix seconds.
std::int64_t parse_utc(const std::string& iso);
std::int64_t unix_now();

/// Keys and tokens made once, on first use, through the admin API:
/// c-ecdsa, c-rsa (2048), c-hmac, c-jwt (ES256), and the tokens
/// svc (sign:c-*, verify:c-*) and narrow (verify:c-* only).
struct World {
    std::string svc, svc_kid;
    std::string narrow;
    std::string jwt_kid;
};
const World& world();

}  // namespace kw::test
