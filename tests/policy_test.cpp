// Rotation policies: parsing, validation (with file:line), matching, defaults.
// Pure unit tests: no token, no store. KW_POLICY_DIR points at policies/.
#include "core/rotation/policy.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "core/error.hpp"

using namespace kw::core;
using namespace kw::core::rotation;

namespace {

constexpr std::int64_t kDay = 86400;

ManagedKey key(std::string name, KeyType type, std::map<std::string, std::string> labels = {}) {
    ManagedKey k;
    k.id = "id-" + name;
    k.name = std::move(name);
    k.type = type;
    k.labels = std::move(labels);
    return k;
}

/// The message parse() throws for `text` (parsed as "t.toml"), or "<no error>".
std::string error_of(std::string_view text) {
    try {
        (void)PolicySet::parse(text, "t.toml");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::config);
        return e.what();
    }
    return "<no error>";
}

/// The message starts with "t.toml:LINE: " and contains `reason`.
void check_error(std::string_view text, int line, std::string_view reason) {
    const std::string m = error_of(text);
    INFO("message: ", m);
    const std::string where = "t.toml:" + std::to_string(line) + ": ";
    CHECK(m.rfind(where, 0) == 0);
    CHECK(m.find(reason) != std::string::npos);
}

std::string policy_dir() {
    const char* d = std::getenv("KW_POLICY_DIR");
    REQUIRE_MESSAGE(d != nullptr, "KW_POLICY_DIR must point at policies/");
    return d;
}

std::vector<std::filesystem::path> example_files() {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(policy_dir())) {
        if (e.path().extension() == ".toml") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

}  // namespace

// ------------------------------------------------------------------ examples

TEST_CASE("every example policy file parses") {
    auto files = example_files();
    REQUIRE(files.size() >= 4);
    std::set<Strategy> strategies;
    std::set<KeyType> types;
    std::string all;
    for (const auto& f : files) {
        INFO("file: ", f.string());
        PolicySet set;
        try {
            set = PolicySet::load_file(f.string());
        } catch (const Error& e) {
            FAIL(e.what());
        }
        CHECK_FALSE(set.policies().empty());
        for (const auto& p : set.policies()) {
            CHECK(p.source == f.string());
            CHECK(p.line > 0);
            CHECK(p.cryptoperiod > 0);
            strategies.insert(p.strategy);
            if (p.match.type) types.insert(*p.match.type);
        }
        std::ifstream in(f);
        std::stringstream ss;
        ss << in.rdbuf();
        all += ss.str() + "\n";
    }
    // At least one example per strategy and per key type.
    CHECK(strategies ==
          std::set<Strategy>{Strategy::immediate, Strategy::gradual, Strategy::overlapping, Strategy::blue_green});
    for (auto t : {KeyType::hmac, KeyType::rsa, KeyType::ecdsa, KeyType::ed25519, KeyType::jwt, KeyType::api_token}) {
        CHECK_MESSAGE(types.contains(t), "no example for ", to_string(t));
    }
    // The examples also load together (as a policy directory would be):
    // no duplicate names, no identical match at equal priority.
    auto combined = PolicySet::parse(all, "all.toml");
    std::size_t total = 0;
    for (const auto& f : files) total += PolicySet::load_file(f.string()).policies().size();
    CHECK(combined.policies().size() == total);
}

TEST_CASE("example policies carry the values they document") {
    auto set = PolicySet::load_file(policy_dir() + "/signing-gradual.toml");
    const Policy* rsa = set.find("payments-rsa");
    REQUIRE(rsa != nullptr);
    CHECK(rsa->strategy == Strategy::gradual);
    CHECK(rsa->cryptoperiod == 365 * kDay);
    REQUIRE(rsa->phases.size() == 4);
    CHECK(rsa->phases[0].share == 1);
    CHECK(rsa->phases[0].duration == 3600);
    CHECK(rsa->phases[3].share == 100);
    CHECK(rsa->match.name_glob == "payments-*");
    CHECK(rsa->match.type == KeyType::rsa);

    const Policy* ec = set.find("release-ecdsa");
    REQUIRE(ec != nullptr);
    CHECK(ec->cryptoperiod == default_cryptoperiod(KeyType::ecdsa));
    REQUIRE(ec->phases.size() == 2);  // [[policy.gradual.phases]] form
    CHECK(ec->phases[0].duration == 43200);
    CHECK(ec->quiet_time == kDay);

    auto bg = PolicySet::load_file(policy_dir() + "/ed25519-blue-green.toml");
    REQUIRE(bg.find("firmware-ed25519") != nullptr);
    CHECK(bg.find("firmware-ed25519")->rollback_window == 3 * kDay);
    CHECK(bg.find("firmware-ed25519")->strategy == Strategy::blue_green);

    auto jwt = PolicySet::load_file(policy_dir() + "/jwt-issuers.toml");
    const Policy* prod = jwt.find("jwt-prod");
    REQUIRE(prod != nullptr);
    CHECK(prod->cryptoperiod == default_cryptoperiod(KeyType::jwt));
    CHECK(prod->jwks_lead == 2 * kDay);
    CHECK(prod->alert_hooks.size() == 2);
    CHECK(prod->match.labels == std::map<std::string, std::string>{{"env", "prod"}});
}

// --------------------------------------------------------------- basics

TEST_CASE("strategy names are case-insensitive and round-trip") {
    for (auto s : {Strategy::immediate, Strategy::gradual, Strategy::overlapping, Strategy::blue_green}) {
        CHECK(parse_strategy(to_string(s)) == s);
    }
    CHECK(to_string(Strategy::blue_green) == "BLUE_GREEN");
    CHECK(parse_strategy("blue_green") == Strategy::blue_green);
    CHECK(parse_strategy("Gradual") == Strategy::gradual);
    CHECK_FALSE(parse_strategy("ROLLING"));
    CHECK_FALSE(parse_strategy(""));
    CHECK_FALSE(parse_strategy("BLUE-GREEN"));
}

TEST_CASE("an empty file, or one with only comments, holds no policies") {
    CHECK(PolicySet::parse("", "t.toml").policies().empty());
    CHECK(PolicySet::parse("# nothing yet\n\n", "t.toml").policies().empty());
}

TEST_CASE("defaults: strategy, priority and fields left out") {
    auto set = PolicySet::parse(R"([[policy]]
name = "p"
[policy.match]
type = "hmac"
)",
                                "t.toml");
    REQUIRE(set.policies().size() == 1);
    const Policy& p = set.policies()[0];
    CHECK(p.name == "p");
    CHECK(p.source == "t.toml");
    CHECK(p.line == 1);
    CHECK(p.priority == 0);
    CHECK(p.strategy == Strategy::overlapping);
    CHECK(p.cryptoperiod == default_cryptoperiod(KeyType::hmac));
    CHECK(p.overlap == 0);
    CHECK(p.jwks_lead == 0);
    CHECK(p.keep_versions == 3);
    CHECK_FALSE(p.max_uses);
    CHECK(p.expiry_warning == 14 * kDay);
    CHECK(p.quiet_time == 0);
    CHECK(p.rollback_window == kDay);
    CHECK(p.alert_hooks.empty());
    CHECK(p.phases.empty());
    CHECK_FALSE(p.match.name_glob);
    CHECK(p.match.labels.empty());
}

TEST_CASE("default cryptoperiods follow the NIST SP 800-57 table") {
    // Symmetric authentication key (OUP <= 2 years): 1 year.
    CHECK(default_cryptoperiod(KeyType::hmac) == 365 * kDay);
    // Private signature keys (1-3 years): 1 year.
    CHECK(default_cryptoperiod(KeyType::rsa) == 365 * kDay);
    CHECK(default_cryptoperiod(KeyType::ecdsa) == 365 * kDay);
    CHECK(default_cryptoperiod(KeyType::ed25519) == 365 * kDay);
    // JWT signing keys: 90 days (JWKS makes rotation cheap).
    CHECK(default_cryptoperiod(KeyType::jwt) == 90 * kDay);
    // API tokens (symmetric authorization secret, bearer): 90 days.
    CHECK(default_cryptoperiod(KeyType::api_token) == 90 * kDay);
    // Provisioning tokens: one bootstrap, 1 hour.
    CHECK(default_cryptoperiod(KeyType::provisioning) == 3600);
    // Nothing exceeds NIST's longest suggested originator-usage period (3 years).
    for (auto t : {KeyType::hmac, KeyType::rsa, KeyType::ecdsa, KeyType::ed25519, KeyType::jwt, KeyType::api_token,
                   KeyType::provisioning}) {
        CHECK(default_cryptoperiod(t) > 0);
        CHECK(default_cryptoperiod(t) <= kDay * 3 * 365);
    }
    // Used when a policy names a type but no cryptoperiod.
    for (auto t : {KeyType::rsa, KeyType::jwt, KeyType::api_token, KeyType::provisioning}) {
        auto set = PolicySet::parse(
            "[[policy]]\nname = \"p\"\nmatch = { type = \"" + std::string(to_string(t)) + "\" }\n", "t.toml");
        CHECK(set.policies()[0].cryptoperiod == default_cryptoperiod(t));
    }
    // An explicit cryptoperiod wins over the default.
    auto set =
        PolicySet::parse("[[policy]]\nname = \"p\"\ncryptoperiod = \"7d\"\nmatch = { type = \"rsa\" }\n", "t.toml");
    CHECK(set.policies()[0].cryptoperiod == 7 * kDay);
}

TEST_CASE("durations as strings with units or as integer seconds") {
    auto set = PolicySet::parse(R"([[policy]]
name = "a"
cryptoperiod = "90d"
overlap = "12h"
jwks_lead = "15m"
expiry_warning = "2w"
quiet_time = "30s"

[[policy]]
name = "b"
priority = 1
cryptoperiod = 7776000
overlap = 43200
jwks_lead = 900
expiry_warning = 1209600
quiet_time = 30

[[policy]]
name = "c"
priority = 2
cryptoperiod = "3600"
strategy = "BLUE_GREEN"
[policy.blue_green]
rollback_window = "1h"
)",
                                "t.toml");
    const Policy* a = set.find("a");
    const Policy* b = set.find("b");
    const Policy* c = set.find("c");
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    REQUIRE(c != nullptr);
    CHECK(a->cryptoperiod == 90 * kDay);
    CHECK(a->overlap == 12 * 3600);
    CHECK(a->jwks_lead == 900);
    CHECK(a->expiry_warning == 14 * kDay);
    CHECK(a->quiet_time == 30);
    CHECK(b->cryptoperiod == a->cryptoperiod);
    CHECK(b->overlap == a->overlap);
    CHECK(b->jwks_lead == a->jwks_lead);
    CHECK(b->expiry_warning == a->expiry_warning);
    CHECK(b->quiet_time == a->quiet_time);
    CHECK(c->cryptoperiod == 3600);
    CHECK(c->rollback_window == 3600);
    CHECK(set.find("nope") == nullptr);
}

TEST_CASE("every field is read") {
    auto set = PolicySet::parse(R"([[policy]]
name = "full"
priority = -5
cryptoperiod = "30d"
strategy = "gradual"
jwks_lead = "2d"
keep_versions = 5
max_uses = 1000
expiry_warning = "3d"
quiet_time = "6h"
alert_hooks = ["https://a.example/x", "http://b.example:8080/y"]
[policy.match]
name = "svc-*"
type = "ecdsa"
labels = { env = "prod", team = "pay" }
[policy.gradual]
phases = [{ share = 0, duration = "1h" }, { share = 0, duration = 60 }, { share = 100, duration = "1d" }]
)",
                                "t.toml");
    const Policy& p = set.policies().at(0);
    CHECK(p.priority == -5);
    CHECK(p.cryptoperiod == 30 * kDay);
    CHECK(p.strategy == Strategy::gradual);
    CHECK(p.jwks_lead == 2 * kDay);
    CHECK(p.keep_versions == 5);
    CHECK(p.max_uses == 1000);
    CHECK(p.expiry_warning == 3 * kDay);
    CHECK(p.quiet_time == 6 * 3600);
    CHECK(p.alert_hooks == std::vector<std::string>{"https://a.example/x", "http://b.example:8080/y"});
    CHECK(p.match.name_glob == "svc-*");
    CHECK(p.match.type == KeyType::ecdsa);
    CHECK(p.match.labels.size() == 2);
    REQUIRE(p.phases.size() == 3);
    CHECK(p.phases[1].share == 0);  // non-decreasing, not strictly increasing
    CHECK(p.phases[1].duration == 60);
    CHECK(p.phases[2].share == 100);
}

// --------------------------------------------------------------- mistakes

TEST_CASE("TOML syntax errors and truncated files") {
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \n", 3, "TOML syntax error");
    check_error("[[policy]]\nname = \"a", 2, "TOML syntax error");
    check_error("[[policy]]\nname = \"a\"\n[[poli", 3, "TOML syntax error");
    // A file cut off inside an array of phases.
    check_error(R"([[policy]]
name = "a"
cryptoperiod = "1d"
strategy = "GRADUAL"
[policy.gradual]
phases = [
  { share = 10, duration = "1h" },
)",
                7, "TOML syntax error");
    // Cut off right after a header: the policy has no name.
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\n\n[[policy]]\n", 5, "policy has no name");
    check_error("[[policy]]\nname = \"a\"\nname = \"b\"\n", 3, "TOML syntax error");
}

TEST_CASE("unknown fields are rejected at every level") {
    check_error("polcy = 1\n", 1, "unknown field 'polcy'");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nstratgy = \"GRADUAL\"\n", 4,
                "unknown field 'policy.stratgy'");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\n[policy.match]\ntype = \"hmac\"\nlabel = {}\n", 6,
                "unknown field 'policy.match.label'");
    check_error(R"([[policy]]
name = "a"
cryptoperiod = "1d"
strategy = "GRADUAL"
[policy.gradual]
steps = 3
phases = [{ share = 100, duration = "1h" }]
)",
                6, "unknown field 'policy.gradual.steps'");
    check_error(R"([[policy]]
name = "a"
cryptoperiod = "1d"
strategy = "GRADUAL"
[policy.gradual]
phases = [
  { share = 50, duration = "1h" },
  { share = 100, duration = "1h", weight = 2 },
]
)",
                8, "unknown field 'policy.gradual.phases.weight'");
    check_error(R"([[policy]]
name = "a"
cryptoperiod = "1d"
strategy = "BLUE_GREEN"
[policy.blue_green]
rollback = "1h"
)",
                6, "unknown field 'policy.blue_green.rollback'");
}

TEST_CASE("of several unknown fields, the first in the file is reported") {
    check_error("[[policy]]\nname = \"a\"\nzeta = 1\ncryptoperiod = \"1d\"\nalpha = 2\n", 3,
                "unknown field 'policy.zeta'");
}

TEST_CASE("wrong types") {
    check_error("[[policy]]\nname = 5\n", 2, "name must be a string");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\npriority = \"high\"\n", 4,
                "priority must be an integer");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\npriority = 1.5\n", 4, "priority must be an integer");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nstrategy = 1\n", 4, "strategy must be a string");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nkeep_versions = \"3\"\n", 4,
                "keep_versions must be an integer");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nmatch = \"hmac\"\n", 4,
                "policy.match must be a table");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\n[policy.match]\nlabels = { env = 1 }\n", 5,
                "match.labels.env must be a string");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\n[policy.match]\nlabels = [\"env\"]\n", 5,
                "match.labels must be a table");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nalert_hooks = \"https://x\"\n", 4,
                "alert_hooks must be an array");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nalert_hooks = [\n  \"https://x\",\n  3,\n]\n", 6,
                "alert_hooks entries must be strings");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = true\n", 3, "cryptoperiod must be a duration");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = 1.5\n", 3, "cryptoperiod must be a duration");
    check_error("policy = 3\n", 1, "policy must be an array of tables");
    check_error("[policy]\nname = \"a\"\n", 1, "policy must be an array of tables");
    check_error("policy = [1]\n", 1, "each policy must be a table");
}

TEST_CASE("names: required, non-empty, unique") {
    check_error("[[policy]]\ncryptoperiod = \"1d\"\n", 1, "policy has no name");
    check_error("\n\n[[policy]]\npriority = 1\ncryptoperiod = \"1d\"\n", 3, "policy has no name");
    check_error("[[policy]]\nname = \"\"\n", 2, "name must not be empty");
    check_error(R"([[policy]]
name = "dup"
cryptoperiod = "1d"

[[policy]]
priority = 1
name = "dup"
cryptoperiod = "1d"
)",
                7, "duplicate policy name 'dup' (first defined at line 1)");
}

TEST_CASE("bad strategy and key type names") {
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nstrategy = \"ROLLING\"\n", 4,
                "unknown strategy \"ROLLING\": expected IMMEDIATE, GRADUAL, OVERLAPPING or BLUE_GREEN");
    check_error("[[policy]]\nname = \"a\"\n[policy.match]\nname = \"x\"\ntype = \"aes\"\n", 5,
                "unknown key type \"aes\"");
    check_error("[[policy]]\nname = \"a\"\nmatch = { type = \"HMAC\" }\n", 3, "unknown key type \"HMAC\"");
}

TEST_CASE("bad durations") {
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"10x\"\n", 3, "cryptoperiod \"10x\" is not a duration");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1.5h\"\n", 3, "is not a duration");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"-5s\"\n", 3, "is not a duration");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"\"\n", 3, "is not a duration");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"9999999999999999w\"\n", 3, "is not a duration");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\noverlap = -60\n", 4, "overlap -60 is negative");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nquiet_time = \"soon\"\n", 4,
                "quiet_time \"soon\" is not a duration");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nexpiry_warning = \"7 d\"\n", 4,
                "expiry_warning \"7 d\" is not a duration");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"0d\"\n", 3, "cryptoperiod must be longer than zero");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = 0\n", 3, "cryptoperiod must be longer than zero");
}

TEST_CASE("cryptoperiod is required without match.type") {
    check_error("[[policy]]\nname = \"a\"\n[policy.match]\nname = \"x-*\"\n", 1, "policy 'a' needs a cryptoperiod");
}

TEST_CASE("overlap, jwks_lead and rollback_window may not outlast the cryptoperiod") {
    check_error(R"([[policy]]
name = "a"
cryptoperiod = "7d"
overlap = "10d"
)",
                4, "overlap 10d is longer than the cryptoperiod 7d");
    // Against the NIST default (api_token: 90d), in seconds.
    check_error("[[policy]]\nname = \"a\"\nmatch = { type = \"api_token\" }\n\noverlap = 8640000\n", 5,
                "overlap 100d is longer than the cryptoperiod 90d");
    // Equal is fine.
    CHECK(error_of("[[policy]]\nname = \"a\"\ncryptoperiod = \"7d\"\noverlap = \"168h\"\n") == "<no error>");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"12h\"\njwks_lead = \"1d\"\n", 4,
                "jwks_lead 1d is longer than the cryptoperiod 12h");
    check_error(R"([[policy]]
name = "a"
cryptoperiod = "1d"
strategy = "BLUE_GREEN"
[policy.blue_green]
rollback_window = "2d"
)",
                6, "rollback_window 2d is longer than the cryptoperiod 1d");
}

TEST_CASE("fields a strategy would ignore are rejected") {
    const std::string head = "[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\n";
    check_error(head + "strategy = \"IMMEDIATE\"\noverlap = \"1h\"\n", 5,
                "overlap applies only to strategy OVERLAPPING (this policy is IMMEDIATE");
    check_error(head + "strategy = \"IMMEDIATE\"\noverlap = 0\n", 5, "overlap applies only to strategy OVERLAPPING");
    check_error(
        head + "strategy = \"GRADUAL\"\noverlap = \"1h\"\ngradual = { phases = [{ share = 100, duration = 1 }] }\n", 5,
        "overlap applies only to strategy OVERLAPPING (this policy is GRADUAL; the last phase's duration");
    check_error(head + "strategy = \"BLUE_GREEN\"\noverlap = \"1h\"\n", 5,
                "overlap applies only to strategy OVERLAPPING (this policy is BLUE_GREEN; use [policy.blue_green] "
                "rollback_window)");
    check_error(head + "strategy = \"IMMEDIATE\"\nquiet_time = \"1h\"\n", 5,
                "quiet_time does not apply to strategy IMMEDIATE");
    CHECK(error_of(head + "strategy = \"OVERLAPPING\"\noverlap = \"1h\"\nquiet_time = \"1h\"\n") == "<no error>");
    CHECK(error_of(head + "strategy = \"BLUE_GREEN\"\nquiet_time = \"1h\"\n") == "<no error>");
}

TEST_CASE("GRADUAL phases") {
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nstrategy = \"GRADUAL\"\n", 4,
                "strategy GRADUAL needs phases");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nstrategy = \"GRADUAL\"\n[policy.gradual]\n", 5,
                "strategy GRADUAL needs phases");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nstrategy = \"GRADUAL\"\ngradual = { phases = [] }\n",
                5, "phases must not be empty");
    const char* head = "[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nstrategy = \"GRADUAL\"\n[policy.gradual]\n";
    auto with = [&](const std::string& phases) { return std::string(head) + phases; };
    // Lines: 6 = "phases = [", 7.. = one phase per line.
    check_error(with("phases = [\n  { share = 10, duration = \"1h\" },\n  { share = 150, duration = \"1h\" },\n]\n"), 8,
                "phase share 150 is outside 0..100");
    check_error(with("phases = [\n  { share = -1, duration = \"1h\" },\n  { share = 100, duration = \"1h\" },\n]\n"), 7,
                "phase share -1 is outside 0..100");
    check_error(with("phases = [\n  { share = 50, duration = \"1h\" },\n  { share = 20, duration = \"1h\" },\n"
                     "  { share = 100, duration = \"1h\" },\n]\n"),
                8, "phase share 20 is lower than the previous phase's 50");
    check_error(with("phases = [\n  { share = 10, duration = \"1h\" },\n  { share = 90, duration = \"1h\" },\n]\n"), 8,
                "the last phase must reach share 100 (it has 90)");
    check_error(with("phases = [\n  { duration = \"1h\" },\n]\n"), 7, "phase has no share");
    check_error(with("phases = [\n  { share = 100 },\n]\n"), 7, "phase has no duration");
    check_error(with("phases = [\n  { share = 100, duration = \"1y\" },\n]\n"), 7,
                "phase duration \"1y\" is not a duration");
    check_error(with("phases = [\n  { share = \"all\", duration = \"1h\" },\n]\n"), 7,
                "phase share must be an integer");
    check_error(with("phases = [\n  100,\n]\n"), 7, "each phase must be a table");
    check_error(with("phases = { share = 100 }\n"), 6, "phases must be an array");
    check_error(with("phases = [\n  { share = 50, duration = \"12h\" },\n  { share = 100, duration = \"13h\" },\n]\n"),
                6, "phases last 25h in total, longer than the cryptoperiod 1d");
    // Array-of-tables form: errors point at the phase's own lines.
    check_error(
        with("[[policy.gradual.phases]]\nshare = 10\nduration = \"1h\"\n[[policy.gradual.phases]]\nshare = 101\n"
             "duration = \"1h\"\n"),
        10, "phase share 101 is outside 0..100");
}

TEST_CASE("strategy-specific sections on the wrong strategy") {
    check_error(R"([[policy]]
name = "a"
cryptoperiod = "1d"
strategy = "OVERLAPPING"
[policy.gradual]
phases = [{ share = 100, duration = "1h" }]
)",
                6, "phases apply only to strategy GRADUAL (this policy is OVERLAPPING)");
    // The default strategy is OVERLAPPING, too.
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\n[policy.gradual]\n", 4,
                "[policy.gradual] applies only to strategy GRADUAL");
    check_error(R"([[policy]]
name = "a"
cryptoperiod = "1d"
strategy = "GRADUAL"
[policy.gradual]
phases = [{ share = 100, duration = "1h" }]
[policy.blue_green]
rollback_window = "1h"
)",
                8, "rollback_window applies only to strategy BLUE_GREEN (this policy is GRADUAL)");
}

TEST_CASE("keep_versions, max_uses, priority and alert hooks") {
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nkeep_versions = 0\n", 4,
                "keep_versions must be at least 1");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nkeep_versions = 4294967296\n", 4,
                "keep_versions 4294967296 is out of range");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nmax_uses = 0\n", 4, "max_uses must be at least 1");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\npriority = 9999999999\n", 4,
                "priority 9999999999 is out of range");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nalert_hooks = [\"https://ok\", \"ftp://x\"]\n", 4,
                "alert hook \"ftp://x\" must be an http:// or https:// URL");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\nalert_hooks = [\"https://\"]\n", 4, "alert hook");
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\n[policy.match]\nname = \"\"\n", 5,
                "match.name must not be empty");
}

TEST_CASE("identical match at equal priority is a conflict for every key") {
    check_error(R"([[policy]]
name = "a"
match = { type = "hmac", labels = { env = "prod" } }

[[policy]]
name = "b"
cryptoperiod = "30d"
[policy.match]
labels = { env = "prod" }
type = "hmac"
)",
                5, "policies a (line 1) and b have the same match and the same priority 0");
    // Two catch-alls.
    check_error("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\n[[policy]]\nname = \"b\"\ncryptoperiod = \"2d\"\n", 4,
                "policies a (line 1) and b have the same match");
    // Different priority, or a different match, is fine.
    CHECK(error_of("[[policy]]\nname = \"a\"\ncryptoperiod = \"1d\"\n[[policy]]\nname = \"b\"\npriority = 1\n"
                   "cryptoperiod = \"2d\"\n") == "<no error>");
    CHECK(error_of("[[policy]]\nname = \"a\"\nmatch = { type = \"hmac\", name = \"x*\" }\n[[policy]]\nname = \"b\"\n"
                   "match = { type = \"hmac\", name = \"y*\" }\n") == "<no error>");
}

TEST_CASE("load_file reports unreadable files and uses the path as the source") {
    try {
        (void)PolicySet::load_file("/nonexistent/policies.toml");
        FAIL("expected an error");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::config);
        CHECK(std::string(e.what()).find("/nonexistent/policies.toml: cannot read policy file") == 0);
    }
    auto dir = std::filesystem::temp_directory_path() / ("kw-policy-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    auto file = (dir / "bad.toml").string();
    {
        std::ofstream out(file);
        out << "# comment\n[[policy]]\nname = \"a\"\ncryptoperiod = \"7d\"\noverlap = \"10d\"\n";
    }
    try {
        (void)PolicySet::load_file(file);
        FAIL("expected an error");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == file + ":5: overlap 10d is longer than the cryptoperiod 7d");
    }
    { std::ofstream out(file, std::ios::trunc); }
    CHECK(PolicySet::load_file(file).policies().empty());
    std::filesystem::remove_all(dir);
}

// --------------------------------------------------------------- matching

TEST_CASE("matching: name glob, type, labels") {
    auto set = PolicySet::parse(R"([[policy]]
name = "glob"
cryptoperiod = "1d"
match = { name = "payments-*" }

[[policy]]
name = "typed"
priority = 1
match = { type = "rsa" }

[[policy]]
name = "labelled"
priority = 2
cryptoperiod = "1d"
match = { labels = { env = "prod", team = "pay" } }

[[policy]]
name = "all-three"
priority = 3
match = { name = "payments-?", type = "ecdsa", labels = { env = "prod" } }
)",
                                "t.toml");
    const Policy& glob = *set.find("glob");
    const Policy& typed = *set.find("typed");
    const Policy& labelled = *set.find("labelled");
    const Policy& all3 = *set.find("all-three");

    CHECK(glob.matches(key("payments-eu", KeyType::hmac)));
    CHECK(glob.matches(key("payments-", KeyType::hmac)));
    CHECK_FALSE(glob.matches(key("xpayments-eu", KeyType::hmac)));
    CHECK_FALSE(glob.matches(key("Payments-eu", KeyType::hmac)));

    CHECK(typed.matches(key("anything", KeyType::rsa)));
    CHECK_FALSE(typed.matches(key("anything", KeyType::ecdsa)));

    CHECK(labelled.matches(key("k", KeyType::hmac, {{"env", "prod"}, {"team", "pay"}, {"extra", "1"}})));
    CHECK_FALSE(labelled.matches(key("k", KeyType::hmac, {{"env", "prod"}})));                   // missing
    CHECK_FALSE(labelled.matches(key("k", KeyType::hmac, {{"env", "prod"}, {"team", "ops"}})));  // different
    CHECK_FALSE(labelled.matches(key("k", KeyType::hmac)));

    CHECK(all3.matches(key("payments-1", KeyType::ecdsa, {{"env", "prod"}})));
    CHECK_FALSE(all3.matches(key("payments-12", KeyType::ecdsa, {{"env", "prod"}})));
    CHECK_FALSE(all3.matches(key("payments-1", KeyType::rsa, {{"env", "prod"}})));
    CHECK_FALSE(all3.matches(key("payments-1", KeyType::ecdsa, {{"env", "dev"}})));

    Policy empty;
    CHECK(empty.matches(key("whatever", KeyType::provisioning)));
}

TEST_CASE("for_key picks the highest-priority match") {
    auto set = PolicySet::parse(R"([[policy]]
name = "fallback"
priority = -10
cryptoperiod = "365d"

[[policy]]
name = "hmac"
match = { type = "hmac" }

[[policy]]
name = "prod-hmac"
priority = 5
match = { type = "hmac", labels = { env = "prod" } }

[[policy]]
name = "critical"
priority = 100
cryptoperiod = "7d"
match = { name = "*-critical" }
)",
                                "t.toml");
    auto name_for = [&](const ManagedKey& k) {
        const Policy* p = set.for_key(k);
        return p ? p->name : std::string("<none>");
    };
    CHECK(name_for(key("a", KeyType::rsa)) == "fallback");
    CHECK(name_for(key("a", KeyType::hmac)) == "hmac");
    CHECK(name_for(key("a", KeyType::hmac, {{"env", "prod"}})) == "prod-hmac");
    CHECK(name_for(key("db-critical", KeyType::hmac, {{"env", "prod"}})) == "critical");
    CHECK(name_for(key("db-critical", KeyType::jwt)) == "critical");

    auto none = PolicySet::parse("[[policy]]\nname = \"only-jwt\"\nmatch = { type = \"jwt\" }\n", "t.toml");
    CHECK(none.for_key(key("a", KeyType::hmac)) == nullptr);
    CHECK(PolicySet{}.for_key(key("a", KeyType::hmac)) == nullptr);
}

TEST_CASE("check_conflicts: two policies claim a real key with equal priority") {
    auto set = PolicySet::parse(R"([[policy]]
name = "by-name"
priority = 10
cryptoperiod = "30d"
match = { name = "payments-*" }

[[policy]]
name = "by-type"
priority = 10
match = { type = "hmac" }

[[policy]]
name = "low"
match = { type = "rsa" }

[[policy]]
name = "low-too"
cryptoperiod = "30d"
match = { labels = { env = "prod" } }

[[policy]]
name = "high"
priority = 50
cryptoperiod = "30d"
match = { labels = { env = "prod" }, type = "ecdsa" }
)",
                                "t.toml");
    // Disjoint keys: fine.
    CHECK_NOTHROW(set.check_conflicts({key("payments-eu", KeyType::rsa), key("auth", KeyType::hmac)}));
    // A tie below a strictly higher match does not matter: "high" decides.
    CHECK_NOTHROW(set.check_conflicts({key("signer", KeyType::ecdsa, {{"env", "prod"}})}));
    CHECK_NOTHROW(set.check_conflicts({}));
    // payments-eu of type hmac: by-name and by-type both at 10.
    try {
        set.check_conflicts({key("auth", KeyType::hmac), key("payments-eu", KeyType::hmac)});
        FAIL("expected a conflict");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::config);
        CHECK(std::string(e.what()) ==
              "t.toml:7: policies by-name and by-type both claim key payments-eu with priority 10");
    }
    // rsa key labelled prod: low and low-too at 0.
    try {
        set.check_conflicts({key("k", KeyType::rsa, {{"env", "prod"}})});
        FAIL("expected a conflict");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "t.toml:16: policies low and low-too both claim key k with priority 0");
    }
}
