// The rotation engine end to end over a real (fresh, private) SoftHSM token,
// the SQLite store and the audit log, with a FakeClock driving time. Runs
// under tests/with-token.sh.
//
// Each strategy is checked by what a user of the key sees: which version
// signs (SignResult.kid) at each moment, which versions verify, and when the
// old one is retired; plus successor API tokens, keep_versions, quiet_time,
// leases between two engines, run_due scheduling and history/stats.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/clock.hpp"
#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/jwt/jwt.hpp"
#include "core/key_service.hpp"
#include "core/root_keys.hpp"
#include "core/rotation/engine.hpp"
#include "core/rotation/policy.hpp"
#include "core/store/store.hpp"
#include "core/tokens/token_service.hpp"
#include "token/attributes.hpp"
#include "token/object.hpp"
#include "token/token.hpp"

using namespace kw::core;
using kw::core::rotation::Engine;
using kw::core::rotation::EngineOptions;
using kw::core::rotation::PolicySet;
using kw::core::rotation::Strategy;
using kw::core::rotation::StrategyStats;
using kw::core::tokens::VerifyCode;

namespace {

constexpr UnixTime kStart = 1'750'000'000;
constexpr std::int64_t kHour = 3600;
constexpr std::int64_t kDay = 86400;

std::string env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr) FAIL("environment variable " << name << " is not set: run under tests/with-token.sh");
    return v;
}

std::string fresh_db(const std::string& name) {
    static int counter = 0;
    std::string p = env("KW_TEST_DIR") + "/rot_" + name + "_" + std::to_string(++counter) + ".db";
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(p + suffix);
    return p;
}

// Wired the way hsm-keytool's Context wires it, torn down in reverse order.
struct Stack {
    std::unique_ptr<kw::token::Token> token;
    std::unique_ptr<Store> store;
    RootKeys roots;
    std::unique_ptr<audit::SqliteSink> sink;
    std::unique_ptr<audit::Keys> audit_keys;
    std::unique_ptr<audit::Log> log;
    std::unique_ptr<KeyService> keys;
    std::unique_ptr<tokens::TokenService> tokens;

    Stack(const Clock& clock, const std::string& path) {
        kw::token::TokenConfig tc;
        tc.module_path = env("KEYWARDEN_HSM_MODULE");
        tc.selector.label = env("KEYWARDEN_TOKEN_LABEL");
        tc.sessions = 4;
        token = std::make_unique<kw::token::Token>(tc);
        token->login(kw::token::SecretString(env("KEYWARDEN_PIN")));
        (void)init_root_keys(*token);
        roots = load_root_keys(*token);
        store = open_store("sqlite:" + path);
        sink = std::make_unique<audit::SqliteSink>(path, audit::Durability::process);
        audit_keys = std::make_unique<audit::Keys>(*token, roots);
        log = std::make_unique<audit::Log>(*sink, *audit_keys, clock);
        keys = std::make_unique<KeyService>(*token, *store, roots, clock, *log, "test:rotation");
        tokens = std::make_unique<tokens::TokenService>(*keys);
    }
    ~Stack() {
        tokens.reset();
        keys.reset();
        log.reset();
        audit_keys.reset();
        sink.reset();
        store.reset();
        token.reset();
    }
    Stack(const Stack&) = delete;
    Stack& operator=(const Stack&) = delete;

    // How many token objects (not session objects, such as the unwrapped
    // working copies of wrapped keys) carry CKA_ID = kid.
    std::size_t token_objects(const std::string& kid) {
        auto lease = token->session();
        kw::token::Template t;
        t.add_bool(CKA_TOKEN, true).add_bytes(CKA_ID, std::vector<std::uint8_t>(kid.begin(), kid.end()));
        return kw::token::find_objects(lease.session(), t.span(), 16).size();
    }
};

template <typename F>
ErrorKind kind_thrown(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.kind();
    }
    FAIL("no kw::core::Error thrown");
    return ErrorKind::store_failure;
}

PolicySet policies(const std::string& toml) {
    return PolicySet::parse(toml, "rotation_test.toml");
}

EngineOptions owner(const std::string& name) {
    EngineOptions o;
    o.owner = name;
    return o;
}

const std::string kData = "rotation test payload";

struct KeyKind {
    const char* label;
    KeyType type;
    std::optional<Curve> curve;
};
const KeyKind kKinds[] = {{"hmac", KeyType::hmac, {}}, {"ecdsa", KeyType::ecdsa, Curve::p256}};

ManagedKey make_key(Stack& s, const std::string& name, const KeyKind& kind) {
    GenerateRequest r;
    r.name = name;
    r.type = kind.type;
    r.curve = kind.curve;
    return s.keys->generate(r);
}

ManagedKey make_hmac(Stack& s, const std::string& name) {
    return make_key(s, name, kKinds[0]);
}

SignResult sign(Stack& s, const std::string& name, std::optional<std::string> caller = {}) {
    SignOptions o;
    o.caller = std::move(caller);
    return s.keys->sign(name, as_bytes(kData), o);
}

bool verifies(Stack& s, const std::string& name, const SignResult& sig, const std::string& kid) {
    return s.keys->verify(name, as_bytes(kData), sig.signature, {}, std::string_view(kid)).valid;
}

VersionState state_of(Stack& s, const std::string& name, const std::string& kid) {
    ManagedKey k = s.keys->get(name);
    const KeyVersion* v = k.version_by_kid(kid);
    REQUIRE_MESSAGE(v != nullptr, "no version " << kid << " of " << name);
    return v->state;
}

std::string primary_kid(Stack& s, const std::string& name) {
    ManagedKey k = s.keys->get(name);
    REQUIRE(k.primary() != nullptr);
    int primaries = 0;
    for (const auto& v : k.versions) primaries += v.primary ? 1 : 0;
    CHECK(primaries == 1);
    return k.primary()->kid;
}

RotationRecord status(Engine& e, const std::string& name) {
    auto r = e.status(name);
    REQUIRE(r.has_value());
    return *r;
}

std::set<std::string> jwks_kids(Stack& s) {
    std::set<std::string> out;
    const nlohmann::json set = jwt::jwks(*s.keys);
    for (const auto& k : set.at("keys")) out.insert(k.at("kid").get<std::string>());
    return out;
}

const StrategyStats* find_stats(const std::vector<StrategyStats>& all, const std::string& strategy) {
    for (const auto& s : all) {
        if (s.strategy == strategy) return &s;
    }
    return nullptr;
}

}  // namespace

// ---------------------------------------------------------------- IMMEDIATE

TEST_CASE("IMMEDIATE: the new version signs at once and the old one is deactivated at once") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("immediate"));
    PolicySet none;
    Engine engine(*s.keys, *s.tokens, none, owner("test-a"));
    for (const auto& kind : kKinds) {
        INFO("key type " << kind.label);
        const std::string name = std::string("imm-") + kind.label;
        ManagedKey k = make_key(s, name, kind);
        const std::string old_kid = k.primary()->kid;
        SignResult before = sign(s, name);
        CHECK(before.kid == old_kid);

        clock.advance(10);
        auto result = engine.rotate(name, Strategy::immediate);
        const RotationRecord& r = result.record;
        CHECK_FALSE(result.new_token.has_value());
        CHECK(r.strategy == "IMMEDIATE");
        CHECK(r.state == "done");
        CHECK(r.outcome == "success");
        CHECK(r.error.empty());
        CHECK(r.from_kid == old_kid);
        CHECK(r.to_kid != old_kid);
        CHECK(r.to_kid.size() == 13);
        CHECK(r.started_at == clock.now());
        CHECK(r.finished_at == clock.now());
        CHECK(r.promoted_at == clock.now());

        // At once: new primary and active, old deactivated, nothing open.
        CHECK(primary_kid(s, name) == r.to_kid);
        CHECK(state_of(s, name, r.to_kid) == VersionState::active);
        CHECK(state_of(s, name, old_kid) == VersionState::deactivated);
        CHECK_FALSE(s.store->open_rotation(k.id).has_value());
        CHECK(status(engine, name).state == "done");

        SignResult after = sign(s, name);
        CHECK(after.kid == r.to_kid);
        CHECK(after.version == 2);
        CHECK(verifies(s, name, after, r.to_kid));
        CHECK_FALSE(verifies(s, name, after, old_kid));
        CHECK_FALSE(verifies(s, name, before, r.to_kid));
        // Deactivated is verify-only (NIST SP 800-57; core/lifecycle.hpp):
        // what the old version signed still checks out with its kid.
        CHECK(verifies(s, name, before, old_kid));
        if (kind.type == KeyType::ecdsa) {
            CHECK(s.keys->public_key_pem(name, std::string_view(r.to_kid)) !=
                  s.keys->public_key_pem(name, std::string_view(old_kid)));
        } else {
            CHECK(after.signature != before.signature);  // HMAC is deterministic: a new key gives a new MAC
        }
        // The state changes are on record, made by this rotation.
        bool deactivated = false;
        for (const auto& c : s.store->state_history(k.id)) {
            if (c.kid == old_kid && c.to == VersionState::deactivated && c.reason == "rotated out") deactivated = true;
        }
        CHECK(deactivated);
    }
}

// ---------------------------------------------------------------- OVERLAPPING

TEST_CASE("OVERLAPPING: the new version signs at once; the old one stays active until the overlap is over") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("overlapping"));
    PolicySet set = policies(R"(
[[policy]]
name = "overlap-1h"
cryptoperiod = "30d"
strategy = "OVERLAPPING"
overlap = "1h"
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    for (const auto& kind : kKinds) {
        INFO("key type " << kind.label);
        const std::string name = std::string("ovl-") + kind.label;
        ManagedKey k = make_key(s, name, kind);
        const std::string old_kid = k.primary()->kid;
        SignResult before = sign(s, name);

        clock.advance(100);
        const UnixTime t0 = clock.now();
        RotationRecord r = engine.rotate(name).record;  // strategy from the policy
        CHECK(r.strategy == "OVERLAPPING");
        CHECK(r.policy == "overlap-1h");
        CHECK(r.state == "promoted");
        CHECK(r.promoted_at == t0);
        CHECK_FALSE(r.finished_at.has_value());

        // New signs, old is active but not primary and still verifies.
        CHECK(primary_kid(s, name) == r.to_kid);
        CHECK(state_of(s, name, old_kid) == VersionState::active);
        CHECK(state_of(s, name, r.to_kid) == VersionState::active);
        SignResult after = sign(s, name);
        CHECK(after.kid == r.to_kid);
        CHECK(verifies(s, name, before, old_kid));
        CHECK(verifies(s, name, after, r.to_kid));
        CHECK(s.keys->verify(name, as_bytes(kData), before.signature).kid == old_kid);

        // One second before the overlap ends: nothing changes.
        clock.set(t0 + kHour - 1);
        (void)engine.run_due();
        CHECK(status(engine, name).state == "promoted");
        CHECK(state_of(s, name, old_kid) == VersionState::active);
        CHECK(sign(s, name).kid == r.to_kid);

        // The overlap is over: the next tick retires the old version.
        clock.set(t0 + kHour);
        if (kind.type == KeyType::hmac) {
            auto touched = engine.run_due();
            REQUIRE(touched.size() == 1);
            CHECK(touched[0].id == r.id);
            CHECK(touched[0].state == "done");
        } else {
            RotationRecord done = engine.advance(status(engine, name));
            CHECK(done.state == "done");
        }
        RotationRecord done = status(engine, name);
        CHECK(done.state == "done");
        CHECK(done.outcome == "success");
        CHECK(done.finished_at == t0 + kHour);
        CHECK(state_of(s, name, old_kid) == VersionState::deactivated);
        CHECK(primary_kid(s, name) == r.to_kid);
        CHECK(sign(s, name).kid == r.to_kid);
        CHECK_FALSE(s.store->open_rotation(k.id).has_value());
        // Nothing further happens on later ticks.
        clock.advance(kHour);
        CHECK(engine.run_due().empty());
    }
}

// ---------------------------------------------------------------- GRADUAL

TEST_CASE("GRADUAL: a growing, stable share of callers signs with the new version, phase by phase") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("gradual"));
    PolicySet set = policies(R"(
[[policy]]
name = "gradual"
cryptoperiod = "30d"
strategy = "GRADUAL"
[policy.gradual]
phases = [
  { share = 10, duration = "1h" },
  { share = 50, duration = "1h" },
  { share = 100, duration = "1h" },
]
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    constexpr int kCallers = 10000;
    std::vector<std::string> callers;
    for (int i = 0; i < kCallers; ++i) callers.push_back("caller-" + std::to_string(i));

    for (const auto& kind : kKinds) {
        INFO("key type " << kind.label);
        const std::string name = std::string("grad-") + kind.label;
        ManagedKey k = make_key(s, name, kind);
        const std::string old_kid = k.primary()->kid;
        SignResult old_sig = sign(s, name);

        clock.advance(100);
        const UnixTime t0 = clock.now();
        RotationRecord r = engine.rotate(name).record;
        CHECK(r.strategy == "GRADUAL");
        CHECK(r.state == "phasing");
        CHECK(r.phase == 0);

        // Signs for every caller; returns who got the new version.
        auto on_new = [&](int expected_share) {
            std::vector<bool> got(kCallers, false);
            int count = 0;
            int mismatches = 0;
            for (int i = 0; i < kCallers; ++i) {
                SignResult sr = sign(s, name, callers[i]);
                REQUIRE((sr.kid == r.to_kid || sr.kid == old_kid));
                got[i] = sr.kid == r.to_kid;
                count += got[i] ? 1 : 0;
                // The version follows the caller's stable bucket exactly.
                if (got[i] != (rollout_bucket(k.id, callers[i]) < expected_share)) ++mismatches;
            }
            CHECK(mismatches == 0);
            const double share = 100.0 * count / kCallers;
            INFO("share on the new version " << share << "%, expected " << expected_share << "%");
            CHECK(share >= expected_share - 2.0);
            CHECK(share <= expected_share + 2.0);
            return got;
        };

        // Phase 1: 10%. The old version is still primary (callers without an
        // id get it) and verifies; the new one verifies too.
        ManagedKey during = s.keys->get(name);
        CHECK(during.rollout_kid == r.to_kid);
        CHECK(during.rollout_share == 10);
        CHECK(primary_kid(s, name) == old_kid);
        CHECK(state_of(s, name, r.to_kid) == VersionState::active);
        CHECK(sign(s, name).kid == old_kid);
        std::vector<bool> phase1 = on_new(10);

        clock.set(t0 + kHour - 1);
        (void)engine.run_due();
        CHECK(status(engine, name).phase == 0);
        CHECK(s.keys->get(name).rollout_share == 10);

        // Phase 2: 50%, and nobody who was on the new version goes back.
        clock.set(t0 + kHour);
        (void)engine.run_due();
        RotationRecord p2 = status(engine, name);
        CHECK(p2.state == "phasing");
        CHECK(p2.phase == 1);
        CHECK(s.keys->get(name).rollout_share == 50);
        std::vector<bool> phase2 = on_new(50);
        int flipped_back = 0;
        for (int i = 0; i < kCallers; ++i) flipped_back += (phase1[i] && !phase2[i]) ? 1 : 0;
        CHECK(flipped_back == 0);
        CHECK(verifies(s, name, old_sig, old_kid));
        CHECK(state_of(s, name, old_kid) == VersionState::active);

        // Phase 3 (100%): the new version is primary for everyone.
        clock.set(t0 + 2 * kHour);
        (void)engine.run_due();
        RotationRecord p3 = status(engine, name);
        CHECK(p3.state == "promoted");
        CHECK(p3.promoted_at == t0 + 2 * kHour);
        CHECK(primary_kid(s, name) == r.to_kid);
        CHECK_FALSE(s.keys->get(name).rollout_kid.has_value());
        CHECK(sign(s, name).kid == r.to_kid);
        for (int i = 0; i < kCallers; i += 10) {
            INFO("caller " << callers[i]);
            REQUIRE(sign(s, name, callers[i]).kid == r.to_kid);
        }
        // The old version verifies until the last phase is over.
        CHECK(state_of(s, name, old_kid) == VersionState::active);
        CHECK(verifies(s, name, old_sig, old_kid));
        clock.set(t0 + 3 * kHour - 1);
        (void)engine.run_due();
        CHECK(status(engine, name).state == "promoted");
        CHECK(state_of(s, name, old_kid) == VersionState::active);

        clock.set(t0 + 3 * kHour);
        (void)engine.run_due();
        RotationRecord done = status(engine, name);
        CHECK(done.state == "done");
        CHECK(done.outcome == "success");
        CHECK(done.finished_at == t0 + 3 * kHour);
        CHECK(state_of(s, name, old_kid) == VersionState::deactivated);
        CHECK(sign(s, name, callers[0]).kid == r.to_kid);
    }
}

// ---------------------------------------------------------------- BLUE_GREEN

TEST_CASE("BLUE_GREEN: checked switch, rollback within the window, retirement after it") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("bluegreen"));
    PolicySet set = policies(R"(
[[policy]]
name = "bg-2h"
cryptoperiod = "30d"
strategy = "BLUE_GREEN"
[policy.blue_green]
rollback_window = "2h"
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    for (const auto& kind : kKinds) {
        INFO("key type " << kind.label);
        const std::string name = std::string("bg-") + kind.label;
        ManagedKey k = make_key(s, name, kind);
        const std::string blue = k.primary()->kid;
        SignResult blue_sig = sign(s, name);

        // 1. Switch to green; the check signed with green before the switch.
        clock.advance(100);
        const std::uint64_t audit_before = s.sink->last_event()->seq;
        RotationRecord r1 = engine.rotate(name).record;
        const std::string green = r1.to_kid;
        CHECK(r1.strategy == "BLUE_GREEN");
        CHECK(r1.state == "promoted");
        CHECK(r1.published_at == clock.now());
        bool checked = false;
        audit::Query q;
        q.after_seq = audit_before;
        for (const auto& e : s.sink->query(q)) {
            if (e.operation == "check" && e.kid == green && e.type == audit::EventType::key_used) checked = true;
        }
        CHECK(checked);
        CHECK(primary_kid(s, name) == green);
        CHECK(sign(s, name).kid == green);
        CHECK(state_of(s, name, blue) == VersionState::active);
        CHECK(verifies(s, name, blue_sig, blue));

        // 2. Roll back within the window: blue signs again, green is deactivated.
        clock.advance(kHour);
        RotationRecord rb = engine.rollback(name);
        CHECK(rb.id == r1.id);
        CHECK(rb.state == "rolled_back");
        CHECK(rb.outcome == "rolled_back");
        CHECK(rb.finished_at == clock.now());
        CHECK(primary_kid(s, name) == blue);
        CHECK(sign(s, name).kid == blue);
        CHECK(state_of(s, name, blue) == VersionState::active);
        CHECK(state_of(s, name, green) == VersionState::deactivated);
        CHECK_FALSE(s.store->open_rotation(k.id).has_value());
        // Nothing left to roll back.
        CHECK(kind_thrown([&] { (void)engine.rollback(name); }) == ErrorKind::not_permitted);
        // Later ticks leave the rolled-back rotation alone.
        clock.advance(3 * kHour);
        (void)engine.run_due();
        CHECK(primary_kid(s, name) == blue);
        CHECK(state_of(s, name, blue) == VersionState::active);

        // 3. Rotate again and let the window pass: blue is retired.
        RotationRecord r2 = engine.rotate(name).record;
        const std::string green2 = r2.to_kid;
        CHECK(green2 != green);
        CHECK(r2.state == "promoted");
        CHECK(sign(s, name).kid == green2);
        const UnixTime t2 = clock.now();
        clock.set(t2 + 2 * kHour - 1);
        (void)engine.run_due();
        CHECK(status(engine, name).state == "promoted");
        CHECK(state_of(s, name, blue) == VersionState::active);
        clock.set(t2 + 2 * kHour);
        (void)engine.run_due();
        CHECK(status(engine, name).state == "done");
        CHECK(state_of(s, name, blue) == VersionState::deactivated);
        CHECK(primary_kid(s, name) == green2);
        CHECK(kind_thrown([&] { (void)engine.rollback(name); }) == ErrorKind::not_permitted);
        CHECK(primary_kid(s, name) == green2);

        // 4. A rollback asked for after the window has closed is refused even
        // before the engine got round to retiring the old version.
        RotationRecord r3 = engine.rotate(name).record;
        clock.advance(2 * kHour + 1);
        try {
            (void)engine.rollback(name);
            FAIL("rollback after the window was allowed");
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::not_permitted);
            CHECK(std::string(e.what()).find("window") != std::string::npos);
        }
        CHECK(primary_kid(s, name) == r3.to_kid);
        CHECK(sign(s, name).kid == r3.to_kid);
        CHECK(status(engine, name).state == "promoted");
        (void)engine.run_due();
        CHECK(status(engine, name).state == "done");
        CHECK(state_of(s, name, green2) == VersionState::deactivated);
    }
}

// ---------------------------------------------------------------- jwks_lead

// JWT keys rotate OVERLAPPING with the new version in the JWKS 30 min early.
constexpr const char* kJwtLeadPolicy = R"(
[[policy]]
name = "jwt-lead"
cryptoperiod = "30d"
strategy = "OVERLAPPING"
overlap = "1h"
jwks_lead = "30m"
match = { type = "jwt" }
)";

TEST_CASE("jwks_lead: the new version is published (pre_active, in the JWKS) before it signs") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("jwkslead"));
    PolicySet set = policies(kJwtLeadPolicy);
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    const std::pair<const char*, JwtAlg> algs[] = {{"jwt-es256", JwtAlg::ES256}, {"jwt-rs256", JwtAlg::RS256}};
    for (const auto& [name, alg] : algs) {
        INFO(name);
        GenerateRequest g;
        g.name = name;
        g.type = KeyType::jwt;
        g.jwt_alg = alg;
        ManagedKey k = s.keys->generate(g);
        const std::string old_kid = k.primary()->kid;
        jwt::SignRequest req;
        req.claims = {{"sub", "alice"}};
        const std::string old_token = jwt::sign(*s.keys, name, req);

        clock.advance(100);
        const UnixTime t0 = clock.now();
        RotationRecord r = engine.rotate(name).record;
        CHECK(r.state == "published");
        CHECK(r.published_at == t0);
        CHECK_FALSE(r.promoted_at.has_value());
        CHECK(state_of(s, name, r.to_kid) == VersionState::pre_active);
        CHECK(primary_kid(s, name) == old_kid);
        auto kids = jwks_kids(s);
        CHECK(kids.count(old_kid) == 1);
        CHECK(kids.count(r.to_kid) == 1);
        // Published, but it does not sign yet.
        CHECK(sign(s, name).kid == old_kid);
        jwt::Verified v1 = jwt::verify(*s.keys, name, jwt::sign(*s.keys, name, req));
        CHECK(v1.valid);
        CHECK(v1.header["kid"] == old_kid);

        clock.set(t0 + 30 * 60 - 1);
        (void)engine.run_due();
        CHECK(status(engine, name).state == "published");
        CHECK(state_of(s, name, r.to_kid) == VersionState::pre_active);
        CHECK(sign(s, name).kid == old_kid);

        // Lead time over: the new version becomes primary and signs.
        clock.set(t0 + 30 * 60);
        (void)engine.run_due();
        RotationRecord p = status(engine, name);
        CHECK(p.state == "promoted");
        CHECK(p.promoted_at == t0 + 30 * 60);
        CHECK(state_of(s, name, r.to_kid) == VersionState::active);
        CHECK(primary_kid(s, name) == r.to_kid);
        CHECK(sign(s, name).kid == r.to_kid);
        const std::string new_token = jwt::sign(*s.keys, name, req);
        jwt::Verified v2 = jwt::verify(*s.keys, name, new_token);
        CHECK(v2.valid);
        CHECK(v2.kid == r.to_kid);
        CHECK(jwt::verify(*s.keys, name, old_token).valid);  // overlap: the old version still verifies
        kids = jwks_kids(s);
        CHECK(kids.count(old_kid) == 1);
        CHECK(kids.count(r.to_kid) == 1);

        // Overlap (from the promotion) over: the old version leaves the JWKS.
        clock.set(t0 + 30 * 60 + kHour);
        (void)engine.run_due();
        CHECK(status(engine, name).state == "done");
        CHECK(state_of(s, name, old_kid) == VersionState::deactivated);
        kids = jwks_kids(s);
        CHECK(kids.count(old_kid) == 0);
        CHECK(kids.count(r.to_kid) == 1);
    }
}

// A JWT key `name` in the middle of a jwks_lead rotation: its new version
// published and pre_active, the old one still active and primary.
struct MidRotation {
    std::string old_kid;
    RotationRecord record;
};
MidRotation start_lead_rotation(Stack& s, Engine& engine, FakeClock& clock, const std::string& name) {
    GenerateRequest g;
    g.name = name;
    g.type = KeyType::jwt;
    g.jwt_alg = JwtAlg::ES256;
    MidRotation m{s.keys->generate(g).primary()->kid, {}};
    clock.advance(100);
    m.record = engine.rotate(name).record;
    REQUIRE(state_of(s, name, m.record.to_kid) == VersionState::pre_active);
    return m;
}

TEST_CASE("a lifecycle operation that one version cannot make changes no version (nothing half done)") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("nohalf"));
    PolicySet set = policies(kJwtLeadPolicy);
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    const auto [old_kid, r] = start_lead_rotation(s, engine, clock, "mid-rotation");
    const auto head = s.log->head_seq();
    // pre_active cannot become deactivated (SP 800-57): the whole operation is
    // refused, and the active version stays active.
    try {
        (void)s.keys->apply("mid-rotation", LifecycleOp::deactivate, "test");
        FAIL("deactivate must be refused while a version is pre_active");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::not_permitted);
        CHECK(std::string(e.what()).find("nothing was changed") != std::string::npos);
    }
    CHECK(state_of(s, "mid-rotation", old_kid) == VersionState::active);
    CHECK(state_of(s, "mid-rotation", r.to_kid) == VersionState::pre_active);
    CHECK(s.log->head_seq() == head);  // and nothing was audited as changed
    CHECK(sign(s, "mid-rotation").kid == old_kid);
    // An operation every version can make still goes through.
    auto changes = s.keys->apply("mid-rotation", LifecycleOp::compromise, "test");
    CHECK(changes.size() == 2);
}

TEST_CASE("revoking a key in the middle of a rotation retires every version, the unused new one destroyed") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("revoke-mid"));
    PolicySet set = policies(kJwtLeadPolicy);
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    const auto [old_kid, r] = start_lead_rotation(s, engine, clock, "revoked-mid");
    s.keys->revoke("revoked-mid", "leaked");  // used to fail half-way: pre_active -> deactivated is not allowed
    const ManagedKey k = s.keys->get("revoked-mid");
    CHECK(k.revoked_at.has_value());
    CHECK(state_of(s, "revoked-mid", old_kid) == VersionState::deactivated);
    CHECK(state_of(s, "revoked-mid", r.to_kid) == VersionState::destroyed);
    CHECK(k.version_by_kid(r.to_kid)->wrapped_blob.empty());
    CHECK_THROWS_AS((void)sign(s, "revoked-mid"), Error);
    // The rotation cannot finish now; the next tick records it as failed.
    clock.advance(31 * 60);
    (void)engine.run_due();
    CHECK(status(engine, "revoked-mid").outcome == "failed");
}

// ---------------------------------------------------------------- API tokens

TEST_CASE("api_token rotation hands out a successor; the old token is valid during the overlap only") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("apitoken"));
    PolicySet set = policies(R"(
[[policy]]
name = "tokens"
strategy = "OVERLAPPING"
overlap = "1h"
match = { type = "api_token" }
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    tokens::IssueRequest req;
    req.name = "ci-deploy";
    req.type = KeyType::api_token;
    req.scopes = {"sign:payments-*"};
    auto issued = s.tokens->issue(req);
    const std::string old_token(issued.token.view());
    const std::string old_kid = issued.key.primary()->kid;
    CHECK(s.tokens->verify(old_token).code == VerifyCode::VALID);

    clock.advance(100);
    const UnixTime t0 = clock.now();
    auto result = engine.rotate("ci-deploy");
    REQUIRE(result.new_token.has_value());
    const std::string new_token = *result.new_token;
    CHECK(new_token != old_token);
    CHECK(result.record.state == "promoted");
    CHECK(result.record.from_kid == old_kid);

    auto vn = s.tokens->verify(new_token, std::string_view("sign:payments-eu"));
    CHECK(vn.code == VerifyCode::VALID);
    CHECK(vn.kid == result.record.to_kid);
    auto vo = s.tokens->verify(old_token);
    CHECK(vo.code == VerifyCode::VALID);
    CHECK(vo.kid == old_kid);
    CHECK(primary_kid(s, "ci-deploy") == result.record.to_kid);

    clock.set(t0 + kHour - 1);
    (void)engine.run_due();
    CHECK(s.tokens->verify(old_token).code == VerifyCode::VALID);

    clock.set(t0 + kHour);
    (void)engine.run_due();
    CHECK(status(engine, "ci-deploy").state == "done");
    CHECK(s.tokens->verify(old_token).code == VerifyCode::REVOKED);
    CHECK(s.tokens->verify(new_token).code == VerifyCode::VALID);

    // run_due never starts a token rotation by itself (nobody would receive
    // the successor), even long past the cryptoperiod.
    clock.advance(365 * kDay);
    (void)engine.run_due();
    CHECK(engine.history("ci-deploy").size() == 1);
    CHECK(s.tokens->verify(new_token).code == VerifyCode::VALID);
}

TEST_CASE("a token rotation resumed with nobody to receive the successor is withdrawn") {
    // As after a crash between recording the rotation and handing out the
    // token: the scheduler must not make a successor nobody will ever see.
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("apitoken-resume"));
    PolicySet none;
    Engine engine(*s.keys, *s.tokens, none, owner("test-a"));
    tokens::IssueRequest req;
    req.name = "svc-token";
    auto issued = s.tokens->issue(req);
    const std::string token(issued.token.view());
    ManagedKey k = s.keys->get("svc-token");
    RotationRecord planned;
    planned.key_id = k.id;
    planned.key_name = k.name;
    planned.strategy = "OVERLAPPING";
    planned.from_kid = k.primary()->kid;
    planned.to_kid = s.keys->new_kid();
    planned.state = "planned";
    planned.started_at = clock.now();
    planned.params = rotation::Params{}.to_json();
    planned.id = s.store->create_rotation(planned);

    auto touched = engine.run_due();
    REQUIRE(touched.size() == 1);
    CHECK(touched[0].state == "failed");
    CHECK(touched[0].outcome == "failed");
    CHECK(touched[0].error.find("interrupted") != std::string::npos);
    ManagedKey after = s.keys->get("svc-token");
    CHECK(after.versions.size() == 1);
    CHECK(after.version_by_kid(planned.to_kid) == nullptr);
    CHECK(s.tokens->verify(token).code == VerifyCode::VALID);
    CHECK_FALSE(s.store->open_rotation(k.id).has_value());
}

// ---------------------------------------------------------------- keep_versions

TEST_CASE("keep_versions: only that many versions keep their material; older ones are destroyed") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("keep"));
    PolicySet set = policies(R"(
[[policy]]
name = "keep-2"
cryptoperiod = "30d"
strategy = "IMMEDIATE"
keep_versions = 2
match = { name = "keep-*" }
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    make_hmac(s, "keep-hmac");
    GenerateRequest ed;
    ed.name = "keep-ed";
    ed.type = KeyType::ed25519;  // token residency on SoftHSM (cannot wrap Ed25519)
    CHECK(s.keys->generate(ed).primary()->residency == Residency::token);

    for (const std::string name : {"keep-hmac", "keep-ed"}) {
        INFO(name);
        std::vector<std::string> kids{primary_kid(s, name)};
        std::vector<SignResult> sigs{sign(s, name)};
        for (int i = 0; i < 4; ++i) {
            clock.advance(60);
            RotationRecord r = engine.rotate(name).record;
            REQUIRE(r.state == "done");
            kids.push_back(r.to_kid);
            sigs.push_back(sign(s, name));
            CHECK(sigs.back().kid == r.to_kid);
        }
        ManagedKey k = s.keys->get(name);
        REQUIRE(k.versions.size() == 5);
        int alive = 0;
        for (const auto& v : k.versions) alive += v.state != VersionState::destroyed ? 1 : 0;
        CHECK(alive == 2);
        for (std::size_t i = 0; i < kids.size(); ++i) {
            INFO("version " << i + 1 << " " << kids[i]);
            const KeyVersion* v = k.version_by_kid(kids[i]);
            REQUIRE(v != nullptr);
            if (i < 3) {
                CHECK(v->state == VersionState::destroyed);
                CHECK(v->wrapped_blob.empty());
                CHECK(s.token_objects(kids[i]) == 0);
                CHECK_FALSE(verifies(s, name, sigs[i], kids[i]));
            } else {
                CHECK(v->state == (i == 4 ? VersionState::active : VersionState::deactivated));
                if (v->residency == Residency::wrapped) {
                    CHECK_FALSE(v->wrapped_blob.empty());
                    CHECK(s.token_objects(kids[i]) == 0);
                } else {
                    CHECK(s.token_objects(kids[i]) == 2);  // private and public key
                }
                CHECK(verifies(s, name, sigs[i], kids[i]));
            }
        }
        CHECK(primary_kid(s, name) == kids.back());
    }
}

// ---------------------------------------------------------------- quiet_time

TEST_CASE("quiet_time: the old version is retired only after it has gone unused for that long") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("quiet"));
    PolicySet set = policies(R"(
[[policy]]
name = "quiet"
cryptoperiod = "30d"
strategy = "OVERLAPPING"
overlap = "1h"
quiet_time = "1h"
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    make_hmac(s, "busy");
    make_hmac(s, "idle");
    const std::string busy_old = primary_kid(s, "busy");
    const std::string idle_old = primary_kid(s, "idle");
    SignResult busy_sig = sign(s, "busy");
    (void)sign(s, "idle");  // the last use of idle's old version: at t0

    const UnixTime t0 = clock.now();
    RotationRecord rb = engine.rotate("busy").record;
    RotationRecord ri = engine.rotate("idle").record;
    CHECK(rb.state == "promoted");
    CHECK(ri.state == "promoted");

    // Verifiers keep using busy's old version during the overlap.
    clock.set(t0 + 1800);
    CHECK(verifies(s, "busy", busy_sig, busy_old));
    clock.set(t0 + 3000);
    CHECK(verifies(s, "busy", busy_sig, busy_old));
    CHECK(s.store->last_used(busy_old) == t0 + 3000);

    // Overlap over: idle (unused for an hour) completes; busy waits, saying why.
    clock.set(t0 + kHour);
    (void)engine.run_due();
    RotationRecord idle_done = status(engine, "idle");
    CHECK(idle_done.state == "done");
    CHECK(state_of(s, "idle", idle_old) == VersionState::deactivated);
    RotationRecord busy_wait = status(engine, "busy");
    CHECK(busy_wait.state == "promoted");
    CHECK(busy_wait.error.find("still in use") != std::string::npos);
    CHECK(busy_wait.error.find(busy_old) != std::string::npos);
    CHECK(state_of(s, "busy", busy_old) == VersionState::active);

    // Still used: the quiet period starts again from the last use.
    clock.set(t0 + 5000);
    CHECK(verifies(s, "busy", busy_sig, busy_old));
    // A failed verification is not a use.
    clock.set(t0 + 5500);
    SignResult garbage = busy_sig;
    garbage.signature[0] ^= 0x01;
    CHECK_FALSE(verifies(s, "busy", garbage, busy_old));
    CHECK(s.store->last_used(busy_old) == t0 + 5000);
    // Signing with the new version is not a use of the old one.
    CHECK(sign(s, "busy").kid == rb.to_kid);

    clock.set(t0 + 5000 + kHour - 1);
    (void)engine.run_due();
    CHECK(status(engine, "busy").state == "promoted");
    CHECK(state_of(s, "busy", busy_old) == VersionState::active);

    clock.set(t0 + 5000 + kHour);
    (void)engine.run_due();
    RotationRecord busy_done = status(engine, "busy");
    CHECK(busy_done.state == "done");
    CHECK(busy_done.outcome == "success");
    CHECK(busy_done.error.empty());
    CHECK(busy_done.finished_at == t0 + 5000 + kHour);
    CHECK(state_of(s, "busy", busy_old) == VersionState::deactivated);
}

// ---------------------------------------------------------------- leases

TEST_CASE("leases: an engine never works on a key another engine holds") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("leases"));
    PolicySet set = policies(R"(
[[policy]]
name = "daily"
cryptoperiod = "1d"
strategy = "OVERLAPPING"
overlap = "1h"
match = { name = "lease-*" }
)");
    Engine a(*s.keys, *s.tokens, set, owner("engine-a"));
    Engine b(*s.keys, *s.tokens, set, owner("engine-b"));
    ManagedKey x = make_hmac(s, "lease-x");
    ManagedKey y = make_hmac(s, "lease-y");
    const std::string x_kid = x.primary()->kid;
    const std::string lease_x = "rotation:" + x.id;

    // B holds X: A cannot rotate it, and no rotation record is left behind.
    REQUIRE(s.store->try_lease(lease_x, "engine-b", clock.now(), 300));
    CHECK(kind_thrown([&] { (void)a.rotate("lease-x"); }) == ErrorKind::store_locked);
    CHECK(a.history("lease-x").empty());
    CHECK(primary_kid(s, "lease-x") == x_kid);
    // B itself may (it renews its own lease), and gives the lease back.
    RotationRecord rb = b.rotate("lease-x").record;
    CHECK(rb.state == "promoted");
    CHECK(s.store->try_lease(lease_x, "engine-a", clock.now(), 300));  // released by B
    s.store->release_lease(lease_x, "engine-a");

    // While B holds X again, A's ticks skip X's open rotation even when it is due.
    REQUIRE(s.store->try_lease(lease_x, "engine-b", clock.now(), 300));
    clock.advance(kHour);
    REQUIRE(s.store->try_lease(lease_x, "engine-b", clock.now(), 300));  // B renews
    auto touched = a.run_due();
    CHECK(touched.empty());
    CHECK(status(a, "lease-x").state == "promoted");
    CHECK(state_of(s, "lease-x", x_kid) == VersionState::active);

    // Due keys held by B are skipped too; the others still rotate.
    s.store->release_lease(lease_x, "engine-b");
    (void)a.run_due();  // finishes X's rotation
    CHECK(status(a, "lease-x").state == "done");
    clock.set(x.created_at + 2 * kDay);
    REQUIRE(s.store->try_lease(lease_x, "engine-b", clock.now(), 300));
    touched = a.run_due();
    REQUIRE(touched.size() == 1);
    CHECK(touched[0].key_name == "lease-y");
    CHECK_FALSE(s.store->open_rotation(x.id).has_value());
    CHECK(s.store->open_rotation(y.id).has_value());
    CHECK(a.history("lease-x").size() == 1);

    // A lease whose holder died expires after its ttl.
    clock.advance(301);
    touched = a.run_due();
    bool x_started = false;
    for (const auto& r : touched) x_started = x_started || r.key_name == "lease-x";
    CHECK(x_started);
    CHECK(s.store->open_rotation(x.id).has_value());
}

// ---------------------------------------------------------------- run_due

TEST_CASE("run_due: keys become due when their cryptoperiod is over, not before") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("due"));
    PolicySet set = policies(R"(
[[policy]]
name = "daily"
cryptoperiod = "1d"
strategy = "IMMEDIATE"
match = { name = "due-*" }
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    ManagedKey a = make_hmac(s, "due-a");
    clock.advance(600);
    ManagedKey b = make_key(s, "due-b", kKinds[1]);
    ManagedKey other = make_hmac(s, "other");  // no policy: rotates only by hand

    CHECK(engine.next_due(a) == kStart + kDay);
    CHECK(engine.next_due(b) == kStart + 600 + kDay);
    CHECK_FALSE(engine.next_due(other).has_value());

    clock.set(kStart + kDay - 1);
    CHECK(engine.run_due().empty());
    CHECK(engine.history("").empty());

    clock.set(kStart + kDay);
    auto touched = engine.run_due();
    REQUIRE(touched.size() == 1);
    CHECK(touched[0].key_name == "due-a");
    CHECK(touched[0].state == "done");
    CHECK(touched[0].policy == "daily");
    CHECK(touched[0].strategy == "IMMEDIATE");
    CHECK(sign(s, "due-a").kid == touched[0].to_kid);
    CHECK(engine.next_due(s.keys->get("due-a")) == kStart + 2 * kDay);

    clock.set(kStart + 600 + kDay);
    touched = engine.run_due();
    REQUIRE(touched.size() == 1);
    CHECK(touched[0].key_name == "due-b");
    CHECK(sign(s, "due-b").kid == touched[0].to_kid);

    clock.advance(kDay - 601);
    CHECK(engine.run_due().empty());
    clock.advance(1);
    touched = engine.run_due();
    REQUIRE(touched.size() == 1);
    CHECK(touched[0].key_name == "due-a");

    // The key without a policy was never touched.
    CHECK(engine.history("other").empty());
    CHECK(primary_kid(s, "other") == other.primary()->kid);
    // A revoked key is never due, and cannot be rotated by hand either.
    s.keys->revoke("due-b");
    CHECK_FALSE(engine.next_due(s.keys->get("due-b")).has_value());
    clock.advance(10 * kDay);
    for (const auto& r : engine.run_due()) CHECK(r.key_name != "due-b");
    CHECK(kind_thrown([&] { (void)engine.rotate("due-b"); }) == ErrorKind::not_permitted);
    CHECK(engine.history("due-b").size() == 1);
}

// ---------------------------------------------------------------- failure before promotion

TEST_CASE(
    "a new version compromised before promotion is never promoted: the rotation fails, the old one keeps signing") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("compromised"));
    PolicySet set = policies(R"(
[[policy]]
name = "lead"
cryptoperiod = "30d"
strategy = "OVERLAPPING"
overlap = "1h"
jwks_lead = "10m"
match = { name = "lead-*" }

[[policy]]
name = "grad"
cryptoperiod = "30d"
strategy = "GRADUAL"
match = { name = "grad-*" }
[policy.gradual]
phases = [{ share = 50, duration = "1h" }, { share = 100, duration = "1h" }]
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    for (const std::string name : {"lead-0", "grad-0"}) {
        INFO(name);
        make_hmac(s, name);
        const std::string old_kid = primary_kid(s, name);
        const UnixTime t0 = clock.now();
        RotationRecord r = engine.rotate(name).record;
        CHECK(r.state == (name == "lead-0" ? "published" : "phasing"));
        // The new version leaks while it waits (JWKS lead / first phase).
        ManagedKey k = s.keys->get(name);
        (void)s.keys->transition_version(k, r.to_kid, VersionState::compromised, "test: leaked before promotion");
        // Meanwhile nobody signs with it.
        for (int i = 0; i < 50; ++i) CHECK(sign(s, name, "caller-" + std::to_string(i)).kid == old_kid);

        clock.set(t0 + kHour);
        (void)engine.run_due();
        RotationRecord after = status(engine, name);
        CHECK(after.state == "failed");
        CHECK(after.outcome == "failed");
        CHECK_FALSE(after.error.empty());
        // The compromised version never became primary; the key still signs.
        CHECK(primary_kid(s, name) == old_kid);
        CHECK(state_of(s, name, old_kid) == VersionState::active);
        CHECK(state_of(s, name, r.to_kid) == VersionState::destroyed);
        CHECK_FALSE(s.keys->get(name).rollout_kid.has_value());
        CHECK(sign(s, name).kid == old_kid);
        CHECK(sign(s, name, "caller-1").kid == old_kid);
        clock.advance(kHour);
    }
}

// ---------------------------------------------------------------- interrupted steps
//
// The states below are exactly what a SIGKILL between two store writes of
// the engine leaves behind (there is no crash_point() there, so they are
// made here by the same calls the engine makes, stopping where the kill
// would). The next tick must finish what was begun, not leave it half done.

TEST_CASE("a retirement killed between recording 'destroyed' and erasing the material is finished by the next tick") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("halfdestroyed"));
    PolicySet set = policies(R"(
[[policy]]
name = "keep-1"
cryptoperiod = "30d"
strategy = "OVERLAPPING"
overlap = "1h"
keep_versions = 1
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    make_hmac(s, "half-hmac");
    GenerateRequest ed;
    ed.name = "half-ed";
    ed.type = KeyType::ed25519;
    (void)s.keys->generate(ed);
    for (const std::string name : {"half-hmac", "half-ed"}) {
        INFO(name);
        const std::string old_kid = primary_kid(s, name);
        RotationRecord r = engine.rotate(name).record;
        REQUIRE(r.state == "promoted");
        clock.advance(kHour);
        // retire(): old -> deactivated, then (beyond keep_versions = 1)
        // -> destroyed ... killed here, before destroy_version_material().
        ManagedKey k = s.keys->get(name);
        (void)s.keys->transition_version(k, old_kid, VersionState::deactivated, "rotated out");
        k = s.keys->get(name);
        (void)s.keys->transition_version(k, old_kid, VersionState::destroyed, "beyond keep_versions");
        // Recovery.
        (void)engine.run_due();
        CHECK(status(engine, name).state == "done");
        ManagedKey after = s.keys->get(name);
        const KeyVersion* old = after.version_by_kid(old_kid);
        REQUIRE(old != nullptr);
        CHECK(old->state == VersionState::destroyed);
        CHECK(old->wrapped_blob.empty());      // a destroyed version keeps no material in the store...
        CHECK(s.token_objects(old_kid) == 0);  // ...nor in the token
        CHECK(sign(s, name).kid == r.to_kid);
        clock.advance(kHour);
    }
}

TEST_CASE("a rollback killed after switching the primary back is not undone by the next tick") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("halfrollback"));
    PolicySet set = policies(R"(
[[policy]]
name = "bg-2h"
cryptoperiod = "30d"
strategy = "BLUE_GREEN"
[policy.blue_green]
rollback_window = "2h"
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    ManagedKey k = make_hmac(s, "half-rb");
    const std::string blue = k.primary()->kid;
    RotationRecord r = engine.rotate("half-rb").record;
    REQUIRE(r.state == "promoted");
    const std::string green = r.to_kid;
    clock.advance(600);
    // rollback(): set_primary(blue) ... killed here, before green is
    // deactivated and the rotation is recorded as rolled back.
    s.store->set_primary(k.id, blue);
    CHECK(sign(s, "half-rb").kid == blue);
    // Recovery must not switch signing back to the version the operator
    // rejected; the rollback is either completed or left for a retry.
    (void)engine.run_due();
    CHECK(primary_kid(s, "half-rb") == blue);
    CHECK(sign(s, "half-rb").kid == blue);
    RotationRecord after = status(engine, "half-rb");
    CHECK(after.state != "done");
    if (after.state == "rolled_back") CHECK(state_of(s, "half-rb", green) == VersionState::deactivated);
    clock.advance(3 * kHour);
    (void)engine.run_due();
    CHECK(primary_kid(s, "half-rb") == blue);
    CHECK(state_of(s, "half-rb", blue) == VersionState::active);
}

// ---------------------------------------------------------------- history and stats

TEST_CASE("history and stats: outcomes, success rate, mean and p95 per strategy and ALL") {
    FakeClock clock(kStart);
    Stack s(clock, fresh_db("stats"));
    PolicySet set = policies(R"(
[[policy]]
name = "ovl"
cryptoperiod = "30d"
strategy = "OVERLAPPING"
overlap = "1h"
match = { name = "ovl-*" }

[[policy]]
name = "bg"
cryptoperiod = "30d"
strategy = "BLUE_GREEN"
match = { name = "bg-*" }
[policy.blue_green]
rollback_window = "2h"

[[policy]]
name = "grad"
cryptoperiod = "30d"
strategy = "GRADUAL"
match = { name = "grad-*" }
[policy.gradual]
phases = [{ share = 20, duration = "1h" }, { share = 100, duration = "1h" }]
)");
    Engine engine(*s.keys, *s.tokens, set, owner("test-a"));
    CHECK(engine.stats().empty());
    std::vector<double> ovl_durations;

    // 20 OVERLAPPING successes, started a minute apart, all retired by one tick.
    const UnixTime t0 = clock.now();
    for (int i = 0; i < 20; ++i) {
        const std::string name = "ovl-" + std::to_string(i);
        make_hmac(s, name);
        clock.set(t0 + i * 60);
        (void)engine.rotate(name);
    }
    const UnixTime tick = t0 + 19 * 60 + kHour;
    clock.set(tick);
    auto touched = engine.run_due();
    CHECK(touched.size() == 20);
    for (int i = 0; i < 20; ++i) {
        auto r = status(engine, "ovl-" + std::to_string(i));
        CHECK(r.outcome == "success");
        ovl_durations.push_back(static_cast<double>(tick - (t0 + i * 60)));
    }

    // One OVERLAPPING failure: a token rotation interrupted before its
    // successor was handed out (as after a crash) is withdrawn by the next
    // tick, which has nobody to give a new token to.
    tokens::IssueRequest treq;
    treq.name = "ovl-token";
    (void)s.tokens->issue(treq);
    ManagedKey tk = s.keys->get("ovl-token");
    RotationRecord planned;
    planned.key_id = tk.id;
    planned.key_name = tk.name;
    planned.strategy = "OVERLAPPING";
    planned.from_kid = tk.primary()->kid;
    planned.to_kid = s.keys->new_kid();
    planned.state = "planned";
    planned.started_at = clock.now();
    planned.params = rotation::Params{}.to_json();
    planned.id = s.store->create_rotation(planned);
    clock.advance(600);
    touched = engine.run_due();
    REQUIRE(touched.size() == 1);
    CHECK(touched[0].state == "failed");
    CHECK(touched[0].outcome == "failed");
    CHECK(touched[0].finished_at == clock.now());
    ovl_durations.push_back(600);

    // A revoked key fails to start at all: no record, nothing counted.
    make_hmac(s, "ovl-revoked");
    s.keys->revoke("ovl-revoked");
    CHECK(kind_thrown([&] { (void)engine.rotate("ovl-revoked"); }) == ErrorKind::not_permitted);
    CHECK(engine.history("ovl-revoked").empty());

    // BLUE_GREEN: one rolled back after 30 minutes, one retired after its window.
    make_hmac(s, "bg-0");
    const UnixTime b0 = clock.now();
    (void)engine.rotate("bg-0");
    clock.set(b0 + 1800);
    CHECK(engine.rollback("bg-0").outcome == "rolled_back");
    const UnixTime b1 = clock.now();
    (void)engine.rotate("bg-0");
    clock.set(b1 + 2 * kHour);
    (void)engine.run_due();
    CHECK(status(engine, "bg-0").outcome == "success");

    // IMMEDIATE: two instant successes, by hand on a key without a policy.
    make_hmac(s, "imm-0");
    (void)engine.rotate("imm-0", Strategy::immediate);
    clock.advance(5);
    (void)engine.rotate("imm-0", Strategy::immediate);

    // GRADUAL: one still in progress.
    make_hmac(s, "grad-0");
    CHECK(engine.rotate("grad-0").record.state == "phasing");

    // History: newest first, per key and overall.
    auto h = engine.history("bg-0");
    REQUIRE(h.size() == 2);
    CHECK(h[0].outcome == "success");
    CHECK(h[1].outcome == "rolled_back");
    CHECK(h[0].id > h[1].id);
    CHECK(engine.history("").size() == 20 + 1 + 2 + 2 + 1);
    CHECK(engine.history("", 3).size() == 3);
    CHECK(engine.history("", 3)[0].key_name == "grad-0");

    // Expected figures, computed here from the durations the clock produced.
    auto p95 = [](std::vector<double> d) {
        // The smallest sample at or above the 95th-percentile position
        // (index ceil(0.95 * (n - 1)), numpy's "higher" method).
        std::sort(d.begin(), d.end());
        return d[static_cast<std::size_t>(std::ceil(0.95 * static_cast<double>(d.size() - 1) - 1e-9))];
    };
    auto mean = [](const std::vector<double>& d) {
        double sum = 0;
        for (double x : d) sum += x;
        return sum / static_cast<double>(d.size());
    };
    const std::vector<double> bg_durations{1800, 2 * kHour};
    const std::vector<double> imm_durations{0, 0};
    std::vector<double> all = ovl_durations;
    all.insert(all.end(), bg_durations.begin(), bg_durations.end());
    all.insert(all.end(), imm_durations.begin(), imm_durations.end());

    auto stats = engine.stats();
    REQUIRE(stats.size() == 5);
    CHECK(stats.back().strategy == "ALL");

    const StrategyStats* ovl = find_stats(stats, "OVERLAPPING");
    REQUIRE(ovl != nullptr);
    CHECK(ovl->total == 21);
    CHECK(ovl->succeeded == 20);
    CHECK(ovl->failed == 1);
    CHECK(ovl->rolled_back == 0);
    CHECK(ovl->in_progress == 0);
    CHECK(ovl->success_rate == doctest::Approx(20.0 / 21.0));
    CHECK(ovl->mean_seconds == doctest::Approx(mean(ovl_durations)));
    CHECK(ovl->p95_seconds == doctest::Approx(p95(ovl_durations)));
    CHECK(ovl->p95_seconds == doctest::Approx(kHour + 18 * 60));  // the second longest of 21

    const StrategyStats* bg = find_stats(stats, "BLUE_GREEN");
    REQUIRE(bg != nullptr);
    CHECK(bg->total == 2);
    CHECK(bg->succeeded == 1);
    CHECK(bg->rolled_back == 1);
    CHECK(bg->failed == 0);
    CHECK(bg->success_rate == doctest::Approx(0.5));
    CHECK(bg->mean_seconds == doctest::Approx(4500));
    CHECK(bg->p95_seconds == doctest::Approx(2 * kHour));

    const StrategyStats* imm = find_stats(stats, "IMMEDIATE");
    REQUIRE(imm != nullptr);
    CHECK(imm->total == 2);
    CHECK(imm->succeeded == 2);
    CHECK(imm->success_rate == doctest::Approx(1.0));
    CHECK(imm->mean_seconds == doctest::Approx(0));
    CHECK(imm->p95_seconds == doctest::Approx(0));

    const StrategyStats* grad = find_stats(stats, "GRADUAL");
    REQUIRE(grad != nullptr);
    CHECK(grad->total == 1);
    CHECK(grad->in_progress == 1);
    CHECK(grad->succeeded == 0);
    CHECK(grad->success_rate == doctest::Approx(0));  // nothing finished yet

    const StrategyStats& sum = stats.back();
    CHECK(sum.total == 26);
    CHECK(sum.succeeded == 23);
    CHECK(sum.failed == 1);
    CHECK(sum.rolled_back == 1);
    CHECK(sum.in_progress == 1);
    CHECK(sum.success_rate == doctest::Approx(23.0 / 25.0));
    CHECK(sum.mean_seconds == doctest::Approx(mean(all)));
    CHECK(sum.p95_seconds == doctest::Approx(p95(all)));
}
