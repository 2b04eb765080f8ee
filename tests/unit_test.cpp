// Pure unit tests: no token, no store.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "core/alerts/spike.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/handle_cache.hpp"
#include "core/ratelimit/denial_sampler.hpp"
#include "core/refill.hpp"
#include "core/types.hpp"
#include "server/response_writer.hpp"
#include "server/verify_json.hpp"
#include "token/spin_park_mutex.hpp"

using namespace kw::core;

TEST_CASE("durations parse with units and reject garbage") {
    CHECK(parse_duration("90") == 90);
    CHECK(parse_duration("15m") == 900);
    CHECK(parse_duration("12h") == 43200);
    CHECK(parse_duration("30d") == 30 * 86400);
    CHECK_FALSE(parse_duration(""));
    CHECK_FALSE(parse_duration("d"));
    CHECK_FALSE(parse_duration("-5s"));
    CHECK_FALSE(parse_duration("5x"));
    CHECK_FALSE(parse_duration("1.5h"));
    CHECK_FALSE(parse_duration("9223372036854775807d"));  // would overflow int64 seconds
    CHECK(parse_duration("2w") == 14 * 86400);
    CHECK(format_duration(90 * 86400) == "90d");
    CHECK(format_duration(7200) == "2h");
    CHECK(format_duration(90) == "90s");
    CHECK(format_duration(0) == "0s");
}

TEST_CASE("enum names round-trip") {
    for (auto t : {KeyType::hmac, KeyType::rsa, KeyType::ecdsa, KeyType::ed25519, KeyType::jwt, KeyType::api_token,
                   KeyType::provisioning}) {
        CHECK(parse_key_type(to_string(t)) == t);
    }
    for (auto s : {VersionState::pre_active, VersionState::active, VersionState::suspended, VersionState::deactivated,
                   VersionState::compromised, VersionState::destroyed}) {
        CHECK(parse_version_state(to_string(s)) == s);
    }
    CHECK_FALSE(parse_key_type("HMAC"));
    CHECK(parse_curve("prime256v1") == Curve::p256);
    CHECK_FALSE(parse_jwt_alg("none"));
}

TEST_CASE("only active versions sign; compromised and destroyed never verify") {
    CHECK(can_sign(VersionState::active));
    CHECK_FALSE(can_sign(VersionState::suspended));
    CHECK_FALSE(can_sign(VersionState::deactivated));
    CHECK(can_verify(VersionState::deactivated));
    CHECK_FALSE(can_verify(VersionState::compromised));
    CHECK_FALSE(can_verify(VersionState::destroyed));
}

TEST_CASE("encodings") {
    std::vector<std::uint8_t> bytes{0x00, 0x01, 0xfe, 0xff, 0x10};
    CHECK(to_hex(bytes) == "0001feff10");
    CHECK(from_hex("0001FEff10") == bytes);
    CHECK_FALSE(from_hex("abc"));
    CHECK_FALSE(from_hex("zz"));
    for (std::size_t n = 0; n < 10; ++n) {
        std::vector<std::uint8_t> v(n, 0xa5);
        CHECK(from_base64(to_base64(v)) == v);
    }
    CHECK_FALSE(from_base64("abc"));
    CHECK(to_base64url(std::vector<std::uint8_t>{0xfb, 0xff}) == "-_8");
    CHECK(to_base62(std::vector<std::uint8_t>{0x00, 0x3d}) == "z");
    CHECK(to_base62(std::vector<std::uint8_t>{0x00, 0x3e}, 4) == "0010");
}

TEST_CASE("handle cache: LRU, first writer wins, and an owned object is retired only when nobody uses it") {
    HandleCache cache(2);
    auto a = cache.put("a", 1, true, 1);
    REQUIRE(a);
    CHECK(a->handle() == 1u);
    CHECK(cache.put("b", 2, false, 1)->handle() == 2u);
    CHECK(cache.get("a", 1)->handle() == 1u);  // a is now most recent
    (void)cache.put("c", 3, true, 1);          // evicts b, not owned: nothing to destroy
    CHECK_FALSE(cache.get("b", 1));
    CHECK(cache.take_retired(1).empty());

    // Two threads unwrapped the same version: the second gets the first's handle, and its own copy is retired.
    auto second = cache.put("c", 30, true, 1);
    CHECK(second->handle() == 3u);
    CHECK(cache.take_retired(1) == std::vector<CK_OBJECT_HANDLE>{30});

    // a is evicted while `a` (a thread signing with it) still holds it: not destroyed yet.
    (void)cache.put("d", 4, true, 1);
    CHECK_FALSE(cache.get("a", 1));
    CHECK(cache.take_retired(1).empty());
    a.reset();  // the signer is done
    CHECK(cache.take_retired(1) == std::vector<CK_OBJECT_HANDLE>{1});

    cache.erase("d");
    CHECK(cache.take_retired(1) == std::vector<CK_OBJECT_HANDLE>{4});
    CHECK_FALSE(cache.get("c", 2));  // stale generation (after fork) reads as absent
    CHECK(cache.size() == 0);
    CHECK(cache.take_retired(2).empty());  // c's object died with the pre-fork sessions
}

#include "core/ratelimit/gcra.hpp"

TEST_CASE("GCRA allows exactly the burst, then refills with time") {
    std::int64_t now_ms = 1'000'000;
    kw::core::ratelimit::Gcra g({5, 1000, 5}, [&] { return now_ms; });
    for (int i = 0; i < 5; ++i) {
        auto d = g.take("k");
        CHECK(d.allowed);
        CHECK(d.remaining == 4 - i);
    }
    auto denied = g.take("k");
    CHECK_FALSE(denied.allowed);
    CHECK(denied.retry_after_ms == 200);  // one emission interval
    CHECK_FALSE(g.peek("k").allowed);
    CHECK(g.take("other").allowed);  // keys are independent
    now_ms += 200;
    CHECK(g.take("k").allowed);
    CHECK_FALSE(g.take("k").allowed);
    now_ms += 1000;
    for (int i = 0; i < 5; ++i) CHECK(g.take("k").allowed);
    CHECK_FALSE(g.take("k").allowed);
    g.set_limit("k", {100, 1000, 100});  // limits change without restart
    CHECK(g.take("k").allowed);
}

TEST_CASE("GCRA cost counts several units") {
    std::int64_t now_ms = 0;
    kw::core::ratelimit::Gcra g({10, 1000, 10}, [&] { return now_ms; });
    CHECK(g.take("k", 7).allowed);
    CHECK_FALSE(g.take("k", 4).allowed);
    CHECK(g.take("k", 3).allowed);
}

TEST_CASE("GCRA: a new default gives the keys under it a full allowance of it; keys with their own limit keep theirs") {
    std::int64_t now_ms = 0;
    kw::core::ratelimit::Gcra g({1, 60000, 1}, [&] { return now_ms; });
    g.set_limit("own", {1, 60000, 1});
    CHECK(g.take("k").allowed);
    CHECK_FALSE(g.take("k").allowed);  // one a minute
    CHECK(g.take("own").allowed);
    g.set_default({1000, 1000, 1000});
    CHECK(g.take("k").allowed);  // not still waiting out the old minute
    CHECK(g.take("k").remaining == 998);
    CHECK_FALSE(g.take("own").allowed);  // its own limit and state are untouched
}

TEST_CASE("GCRA forgets keys whose allowance has refilled, so made-up names cannot grow it without bound") {
    std::int64_t now_ms = 0;
    kw::core::ratelimit::Gcra g({1, 1000, 1}, [&] { return now_ms; });
    const auto n = kw::core::ratelimit::Gcra::prune_every;
    for (std::uint64_t i = 0; i + 1 < n; ++i) CHECK(g.take("name-" + std::to_string(i)).allowed);
    CHECK(g.tracked() == n - 1);
    CHECK_FALSE(g.take("name-0").allowed);  // still within its period: remembered
    now_ms += 2000;                         // every bucket is full again
    CHECK(g.take("fresh").allowed);         // the n-th take sweeps
    CHECK(g.tracked() == 1);
    CHECK(g.take("name-0").allowed);  // forgotten means full, as it should be
    CHECK_FALSE(g.take("name-0").allowed);
}

namespace {

// A keywarden.toml with `body`, removed when the test ends.
struct TempConfig {
    explicit TempConfig(const std::string& body) {
        char name[] = "/tmp/kwconfXXXXXX";
        const int fd = mkstemp(name);
        REQUIRE(fd >= 0);
        ::close(fd);
        path = name;
        std::ofstream(path) << body;
    }
    ~TempConfig() { std::remove(path.c_str()); }
    std::string path;
};

}  // namespace

TEST_CASE("[limits] and [server] settings are read; bad values are refused with the file named") {
    TempConfig good("[limits]\ntoken_limit = 5000\nkey_limit = 20\nkey_burst = 3\n");
    const Config c = load_config(good.path);
    CHECK(c.token_limit == 5000);
    CHECK(c.token_burst == 5000);  // burst follows the limit unless given
    CHECK(c.token_period_ms == 1000);
    CHECK(c.key_limit == 20);
    CHECK(c.key_burst == 3);

    TempConfig zero("[limits]\ntoken_limit = 0\n");
    CHECK_THROWS_WITH_AS(load_config(zero.path), doctest::Contains("[limits]"), Error);
    TempConfig unknown("[limits]\ntoken_limt = 5\n");
    CHECK_THROWS_WITH_AS(load_config(unknown.path), doctest::Contains("token_limt"), Error);
    TempConfig local("[server]\nlocal_socket = \"/run/kw/local.sock\"\nlocal_max_connections = 8\n");
    const Config l = load_config(local.path);
    CHECK(l.local_socket == "/run/kw/local.sock");
    CHECK(l.local_max_connections == 8);
    CHECK(l.unix_socket_group.empty());  // default: the daemon's user only
    TempConfig groups("[server]\nunix_socket_group = \"kw-api\"\nlocal_socket_group = \"1234\"\n");
    const Config g = load_config(groups.path);
    CHECK(g.unix_socket_group == "kw-api");
    CHECK(g.local_socket_group == "1234");
    TempConfig spike("[alerts]\nverify_failed_per_minute = 50\nunknown_token_factor = 4.5\nunknown_token_min = 8\n");
    const Config a = load_config(spike.path);
    CHECK(a.verify_failed_per_minute == 50);
    CHECK(a.unknown_token_factor == 4.5);
    CHECK(a.unknown_token_min == 8);
    CHECK(a.alert_ca_file.empty());  // default: the system CA store
    TempConfig ca("[alerts]\nca_file = \"/etc/kw/ca.pem\"\n");
    CHECK(load_config(ca.path).alert_ca_file == "/etc/kw/ca.pem");
    TempConfig ca_typed("[alerts]\nca_file = 7\n");
    CHECK_THROWS_WITH_AS(load_config(ca_typed.path), doctest::Contains("ca_file must be a string"), Error);
    TempConfig factor("[alerts]\nunknown_token_factor = 0.5\n");
    CHECK_THROWS_WITH_AS(load_config(factor.path), doctest::Contains("unknown_token_factor must be at least 1"), Error);
    TempConfig limits("[server]\nmax_body_bytes = 4096\nmax_header_bytes = 2048\nrequest_timeout_s = 30\n");
    const Config lim = load_config(limits.path);
    CHECK(lim.max_body_bytes == 4096);
    CHECK(lim.max_header_bytes == 2048);
    CHECK(lim.request_timeout_s == 30);
    TempConfig tiny("[server]\nmax_body_bytes = 10\n");
    CHECK_THROWS_WITH_AS(load_config(tiny.path), doctest::Contains("max_body_bytes must be 1024"), Error);
    TempConfig typed("[server]\nlocal_socket_group = 1234\n");
    CHECK_THROWS_WITH_AS(load_config(typed.path), doctest::Contains("local_socket_group"), Error);
}

TEST_CASE("rate-limit denials: the first N per window audited, then one in M, suppressed counts add up") {
    std::int64_t now_ms = 0;
    kw::core::ratelimit::DenialSampler d({.first = 10, .every = 100, .window_ms = 60000}, [&] { return now_ms; });
    std::int64_t audited = 0;
    std::int64_t carried = 0;
    for (int i = 1; i <= 1000; ++i) {
        auto r = d.deny("k");
        if (i <= 10) CHECK(r.audit);
        if (r.audit) {
            ++audited;
            carried += r.suppressed;
        }
    }
    CHECK(audited == 10 + 9);  // denials 110, 210, ..., 910
    CHECK(audited + carried + d.pending("k") == 1000);
    CHECK(d.pending("k") == 90);  // 911..1000
    CHECK(d.pending("other") == 0);
    // Another key has its own allowance.
    CHECK(d.deny("other").audit);
    // A new window: audited again at once, carrying what the old one suppressed.
    now_ms += 60000;
    auto r = d.deny("k");
    CHECK(r.audit);
    CHECK(r.suppressed == 90);
    CHECK(d.pending("k") == 0);
    // A failed audit write puts the denial and what it carried back as pending.
    d.unreport("k", r);
    CHECK(d.pending("k") == 91);
}

TEST_CASE("serialize_response: status line, headers, length, keep-alive per HTTP version, no header splitting") {
    using kw::server::Response;
    std::string out;
    Response ok{200, "application/json", "{\"a\":1}\n", {{"RateLimit-Limit", "5"}}};
    kw::server::serialize_response(ok, 11, true, out);
    CHECK(out ==
          "HTTP/1.1 200 OK\r\nServer: keywardend\r\nContent-Type: application/json\r\nRateLimit-Limit: 5\r\n"
          "Content-Length: 8\r\n\r\n{\"a\":1}\n");
    kw::server::serialize_response(ok, 11, false, out);
    CHECK(out.find("\r\nConnection: close\r\n") != std::string::npos);
    kw::server::serialize_response(ok, 10, true, out);
    CHECK(out.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
    CHECK(out.find("\r\nConnection: keep-alive\r\n") != std::string::npos);
    kw::server::serialize_response(ok, 10, false, out);
    CHECK(out.find("Connection:") == std::string::npos);  // 1.0 closes by default

    Response nasty{429, "application/json", "x", {}};
    nasty.headers["X-Evil"] = std::string("a\r\nSet-Cookie: stolen=1\nb") + '\0' + "c";
    kw::server::serialize_response(nasty, 11, true, out);
    CHECK(out.rfind("HTTP/1.1 429 Too Many Requests\r\n", 0) == 0);
    CHECK(out.find("\r\nX-Evil: a  Set-Cookie: stolen=1 b c\r\n") != std::string::npos);
    CHECK(out.find("\r\nSet-Cookie") == std::string::npos);

    Response empty{204, "application/json", "ignored", {}};
    kw::server::serialize_response(empty, 11, true, out);
    CHECK(out == "HTTP/1.1 204 No Content\r\nServer: keywardend\r\nContent-Type: application/json\r\n\r\n");
}

namespace {

// What keywardend answered before the answer was written by hand: the same
// object built as nlohmann::json (sorted keys) and dumped.
std::string reference_verify_json(const kw::server::VerifyAnswer& a) {
    const auto& v = a.verification;
    auto time_or_null = [](const std::optional<kw::core::UnixTime>& t) {
        return t ? nlohmann::json(kw::core::format_time(*t)) : nlohmann::json(nullptr);
    };
    nlohmann::json j{{"code", kw::core::tokens::to_string(v.code)},
                     {"valid", v.code == kw::core::tokens::VerifyCode::VALID}};
    if (!v.name.empty()) {
        j["key"] = {{"id", v.key_id},
                    {"name", v.name},
                    {"kid", v.kid},
                    {"scopes", v.scopes},
                    {"expires_at", time_or_null(v.expires_at)}};
        j["credits"] = {{"remaining", v.remaining_uses ? nlohmann::json(*v.remaining_uses) : nlohmann::json(nullptr)},
                        {"refill", time_or_null(v.next_refill)}};
    }
    if (a.rate.limit != 0) {
        j["ratelimit"] = {{"limit", a.rate.limit}, {"remaining", a.rate.remaining}, {"reset_ms", a.rate.reset_ms}};
        if (a.limited) j["ratelimit"]["retry_after_ms"] = a.rate.retry_after_ms;
    }
    return j.dump();
}

std::string written(const kw::server::VerifyAnswer& a) {
    std::string out;
    kw::server::append_verify_json(out, a);
    return out;
}

}  // namespace

TEST_CASE("append_verify_json: byte for byte what nlohmann::json dumps, escapes included") {
    using kw::core::tokens::VerifyCode;
    kw::server::VerifyAnswer a;

    SUBCASE("unknown token, no limit applied") {
        a.verification.code = VerifyCode::NOT_FOUND;
        CHECK(written(a) == "{\"code\":\"NOT_FOUND\",\"valid\":false}");
    }
    SUBCASE("valid, unlimited, never expires, rate limited but allowed") {
        a.verification = {VerifyCode::VALID, "k_01", "payments", "v_02", {"read_write", "sign:payments-*"}, {}, {}, {}};
        a.rate = {true, 100, 99, 10, 0};
        CHECK(written(a) == reference_verify_json(a));
        CHECK(written(a).find("\"credits\":{\"refill\":null,\"remaining\":null}") != std::string::npos);
    }
    SUBCASE("credits, refill, expiry, denied with retry_after_ms") {
        a.verification = {VerifyCode::RATE_LIMITED, "k_01", "svc", "v_02", {}, 1'900'000'000, 0, 1'800'000'000};
        a.rate = {false, 5, 0, 4000, 1200};
        a.limited = true;
        CHECK(written(a) == reference_verify_json(a));
        CHECK(written(a).find("\"retry_after_ms\":1200") != std::string::npos);
        CHECK(written(a).find("\"scopes\":[]") != std::string::npos);
    }
    SUBCASE("names that need escaping: quotes, backslash, control characters, non-ASCII") {
        a.verification = {
            VerifyCode::EXPIRED, "k_\"1\"", "a\\b\tc\x01", "v_\xc3\xa9t\xc3\xa9", {"x\ny", "\xe2\x82\xac"}, 0, -3, {}};
        a.rate = {true, -1, -2, 0, 0};
        CHECK(written(a) == reference_verify_json(a));
        CHECK(written(a).find("a\\\\b\\tc\\u0001") != std::string::npos);
    }
    SUBCASE("invalid UTF-8 is refused, as dump() refuses it") {
        a.verification = {VerifyCode::VALID, "k", "bad\xff", "v", {}, {}, {}, {}};
        CHECK_THROWS(written(a));
        CHECK_THROWS(reference_verify_json(a));
    }
}

TEST_CASE("[hsm] locking chooses the module's mutexes; anything else is refused with the file named") {
    CHECK(load_config(std::nullopt).hsm_locking == kw::token::ModuleLocking::keywarden);
    TempConfig os("[hsm]\nlocking = \"os\"\n");
    CHECK(load_config(os.path).hsm_locking == kw::token::ModuleLocking::os);
    CHECK(kw::core::token_config(load_config(os.path)).locking == kw::token::ModuleLocking::os);
    TempConfig typo("[hsm]\nlocking = \"spin\"\n");
    CHECK_THROWS_WITH_AS(load_config(typo.path), doctest::Contains("hsm.locking"), Error);
    CHECK_THROWS_WITH_AS(load_config(typo.path), doctest::Contains((typo.path + ":2").c_str()), Error);
    TempConfig not_string("[hsm]\nlocking = 1\n");
    CHECK_THROWS_AS(load_config(not_string.path), Error);

    ::setenv("KEYWARDEN_HSM_LOCKING", "os", 1);
    CHECK(load_config(std::nullopt).hsm_locking == kw::token::ModuleLocking::os);
    ::setenv("KEYWARDEN_HSM_LOCKING", "pthread", 1);
    CHECK_THROWS_WITH_AS(load_config(std::nullopt), doctest::Contains("KEYWARDEN_HSM_LOCKING"), Error);
    ::unsetenv("KEYWARDEN_HSM_LOCKING");
}

TEST_CASE("SpinParkMutex: mutual exclusion under contention") {
    kw::token::SpinParkMutex m;
    long counter = 0;  // deliberately not atomic: the mutex is what protects it
    constexpr int kThreads = 4;
    constexpr int kRounds = 200000;
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&] {
            for (int j = 0; j < kRounds; ++j) {
                std::lock_guard lock(m);
                ++counter;
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(counter == long{kThreads} * kRounds);
    CHECK(m.try_lock());
    CHECK_FALSE(m.try_lock());  // not recursive
    m.unlock();
}

TEST_CASE("SpinParkMutex: a waiter behind a long holder parks instead of spinning, and is woken") {
    using namespace std::chrono;
    kw::token::SpinParkMutex m;
    m.lock();
    const auto parks_before = kw::token::SpinParkMutex::parks();
    std::atomic<bool> got{false};
    std::clock_t waiter_cpu = 0;
    std::thread waiter([&] {
        const std::clock_t c0 = std::clock();
        m.lock();
        got = true;
        m.unlock();
        waiter_cpu = std::clock() - c0;
    });
    std::this_thread::sleep_for(milliseconds(200));
    CHECK_FALSE(got.load());
    m.unlock();
    waiter.join();
    CHECK(got.load());
    CHECK(kw::token::SpinParkMutex::parks() > parks_before);
    // Waiting 200 ms cost the waiter far less than 200 ms of CPU: it slept.
    CHECK(waiter_cpu < CLOCKS_PER_SEC / 20);
}

namespace {

using kw::core::alerts::Spike;
using kw::core::alerts::SpikeDetector;
using kw::core::alerts::SpikeOptions;

// Feeds `n` answers with `code`; returns the spikes they raised.
std::vector<Spike> feed(SpikeDetector& d, const char* code, int n) {
    std::vector<Spike> out;
    for (int i = 0; i < n; ++i) {
        if (auto s = d.record(code)) out.push_back(*s);
    }
    return out;
}

}  // namespace

TEST_CASE("verify_failed spike: more than per_minute failures, once per minute; limits and credits are not failures") {
    std::int64_t now = 600;  // unix seconds, start of a minute
    SpikeOptions o;
    o.per_minute = 5;
    o.min_count = 1000;  // only the count trigger in this case
    SpikeDetector d(o, [&] { return now; });
    CHECK(feed(d, "RATE_LIMITED", 50).empty());
    CHECK(feed(d, "USAGE_EXCEEDED", 50).empty());
    CHECK(feed(d, "VALID", 50).empty());
    CHECK(feed(d, "EXPIRED", 5).empty());
    auto s = feed(d, "REVOKED", 1);
    REQUIRE(s.size() == 1);
    CHECK(s[0].trigger == Spike::Trigger::count);
    CHECK(s[0].failures == 6);
    CHECK(feed(d, "NOT_FOUND", 100).empty());  // once per minute
    now += 60;
    CHECK(feed(d, "INSUFFICIENT_SCOPE", 5).empty());
    CHECK(feed(d, "DISABLED", 1).size() == 1);  // a new minute counts afresh
}

TEST_CASE("verify_failed spike: unknown tokens far above their usual rate, after a warm-up") {
    std::int64_t now = 0;
    SpikeOptions o;
    o.per_minute = 1000000;  // only the unusual trigger in this case
    SpikeDetector d(o, [&] { return now; });
    // Before the usual rate is known, even 100 unknown tokens are no spike.
    CHECK(feed(d, "NOT_FOUND", 100).empty());
    // Ten minutes of 5 a minute: the usual rate settles near 5.
    SpikeDetector steady(o, [&] { return now; });
    for (int m = 0; m < 10; ++m) {
        now = m * 60;
        CHECK(feed(steady, m % 2 == 0 ? "NOT_FOUND" : "MALFORMED", 5).empty());
    }
    now = 10 * 60;
    const double usual = 5 * (1 - std::pow(0.8, 10));  // EWMA from zero with alpha 0.2
    CHECK(feed(steady, "EXPIRED", 1).empty());         // rolls the minute
    CHECK(steady.usual() == doctest::Approx(usual));
    // 10 x usual = 44.6: the 44th unknown token is not a spike, the 45th is.
    CHECK(feed(steady, "NOT_FOUND", 44).empty());
    auto s = feed(steady, "NOT_FOUND", 1);
    REQUIRE(s.size() == 1);
    CHECK(s[0].trigger == Spike::Trigger::unusual);
    CHECK(s[0].unknown == 45);
    CHECK(s[0].usual == doctest::Approx(usual));
    CHECK(s[0].message().find("45 unknown or malformed tokens this minute") != std::string::npos);
    // Quiet minutes pull the usual rate down.
    now = 30 * 60;
    CHECK(feed(steady, "EXPIRED", 1).empty());
    const double after = (0.2 * 45 + 0.8 * usual) * std::pow(0.8, 19);
    CHECK(steady.usual() == doctest::Approx(after));
}

TEST_CASE("verify_failed spike: a quiet service needs min_count unknown tokens in a minute") {
    std::int64_t now = 0;
    SpikeOptions o;
    o.per_minute = 1000000;
    SpikeDetector d(o, [&] { return now; });
    CHECK(feed(d, "EXPIRED", 1).empty());
    now = 5 * 60;  // five minutes without an unknown token: usual 0, warm
    CHECK(feed(d, "MALFORMED", 19).empty());
    CHECK(feed(d, "NOT_FOUND", 1).size() == 1);
}

TEST_CASE("credit refills: daily at 00:00 UTC, monthly on a day of the month, or a cadence from issue") {
    using kw::core::RefillSchedule;
    constexpr std::int64_t t = 1'800'000'000;  // 2027-01-15T08:00:00Z
    auto daily = RefillSchedule::parse("daily");
    REQUIRE(daily);
    CHECK(daily->next_after(t, t) == 1'800'057'600);              // 2027-01-16T00:00Z
    CHECK(daily->next_after(1'800'057'600, t) == 1'800'144'000);  // exactly at midnight: the next one
    auto first = RefillSchedule::parse("monthly");
    REQUIRE(first);
    CHECK(first->day == 1);
    CHECK(first->next_after(t, t) == 1'801'440'000);  // 2027-02-01
    auto twentieth = RefillSchedule::parse("monthly:20");
    REQUIRE(twentieth);
    CHECK(twentieth->next_after(t, t) == 1'800'403'200);              // 2027-01-20, this month still
    CHECK(twentieth->next_after(1'800'403'200, t) == 1'803'081'600);  // then 2027-02-20
    auto late = RefillSchedule::parse("monthly:28");
    REQUIRE(late);
    CHECK(late->next_after(1'830'294'000, t) == 1'832'630'400);  // 2027-12-31T23:00 -> 2028-01-28 (over the year)
    CHECK(late->to_string() == "monthly:28");
    auto every = RefillSchedule::parse("12h");
    REQUIRE(every);
    CHECK(every->to_string() == "every:43200");
    CHECK(RefillSchedule::parse("every:43200")->seconds == 43200);
    CHECK(every->next_after(t + 5, t) == t + 43200);          // phased from issue, not from midnight
    CHECK(every->next_after(t + 43200, t) == t + 2 * 43200);  // a boundary belongs to the period it starts
    for (const char* bad : {"monthly:0", "monthly:29", "monthly:x", "weekly", "0", "-5", "", "every:0"}) {
        CAPTURE(bad);
        CHECK_FALSE(RefillSchedule::parse(bad));
    }
}
