// A helper for tests/rotation_crash_test.sh (not a doctest). Opens token,
// store, audit log, key service and rotation engine from the environment
// (KEYWARDEN_HSM_MODULE, KEYWARDEN_TOKEN_LABEL, KEYWARDEN_PIN,
// KEYWARDEN_STORE_URL, as tests/with-token.sh sets them) with the real clock,
// then:
//
//   rotation_runner setup N [PREFIX]   init root keys; N keys of each kind:
//                                      PREFIX-hmac-i (wrapped), PREFIX-ecdsa-i
//                                      (wrapped), PREFIX-rsa-i and PREFIX-ed-i
//                                      (token residency). PREFIX defaults to k.
//   rotation_runner rotate NAME STRATEGY [WAIT]
//                                      one Engine::rotate under a policy whose
//                                      time windows (overlap, every GRADUAL
//                                      phase, rollback window) are WAIT
//                                      seconds (default 0: the whole state
//                                      machine runs in this one call)
//   rotation_runner loop [GLOBS]       forever: every key (in a random order;
//                                      only names matching one of the
//                                      comma-separated fnmatch GLOBS, if
//                                      given) rotates IMMEDIATE, then run_due
//   rotation_runner recover            run_due once (resumes or withdraws open
//                                      rotations), prints a JSON summary
//   rotation_runner check              checks the invariants below; exit 1
//                                      with one line per broken one
//
// With KW_CRASH_AT=<step> the engine SIGKILLs itself at that step.
//
// The lease owner is stable across runs (KW_RUNNER_OWNER, default
// "rotation_runner@HOST"), as a restarted scheduler on the same host would
// be: recovery re-takes the lease a killed run left behind instead of
// waiting out its ttl.
//
// Invariants (check):
//   - every key has exactly one primary version, and it is active;
//   - kids are unique and version numbers unique per key;
//   - a wrapped version that is not destroyed has its wrapped blob and no
//     token object; a token-residency version that is not destroyed has its
//     private (or secret) key object with CKA_ID = kid; a destroyed version
//     has neither blob nor token object (its material is really gone);
//   - every token object whose CKA_ID looks like a kid (13 base62
//     characters) belongs to a non-destroyed token-residency version;
//   - a pre_active version, or an active version that is not primary,
//     belongs to an open rotation (nothing is left half made or half retired);
//   - a rollout pointer names an active version of an open GRADUAL rotation;
//   - open rotations are only those legitimately waiting on a time window
//     (JWKS lead, a GRADUAL phase, overlap / rollback window / last phase,
//     quiet time), and their versions are where that state says;
//   - finished rotations left their versions consistent (done: the old one
//     is no longer active; failed / rolled back: the new one is not primary
//     and cannot sign);
//   - the audit chain verifies, every MAC checked in the token.
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/audit/verify.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/key_service.hpp"
#include "core/root_keys.hpp"
#include "core/rotation/engine.hpp"
#include "core/rotation/policy.hpp"
#include "core/store/store.hpp"
#include "core/tokens/token_service.hpp"
#include "token/attributes.hpp"
#include "token/object.hpp"
#include "token/token.hpp"

namespace core = kw::core;
namespace rot = kw::core::rotation;

namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        std::fprintf(stderr, "rotation_runner: %s is not set (run under tests/with-token.sh)\n", name);
        std::exit(2);
    }
    return v;
}

std::string owner_id() {
    if (const char* o = std::getenv("KW_RUNNER_OWNER"); o != nullptr && *o != '\0') return o;
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    return std::string("rotation_runner@") + host;
}

struct World {
    core::SystemClock clock;
    std::unique_ptr<kw::token::Token> token;
    core::RootKeys roots;
    std::unique_ptr<core::Store> store;
    std::unique_ptr<core::audit::SqliteSink> sink;
    std::unique_ptr<core::audit::Keys> audit_keys;
    std::unique_ptr<core::audit::Log> log;
    std::unique_ptr<core::KeyService> keys;
    std::unique_ptr<core::tokens::TokenService> tokens;

    explicit World(bool init) {
        kw::token::TokenConfig tc;
        tc.module_path = env("KEYWARDEN_HSM_MODULE");
        tc.selector.label = env("KEYWARDEN_TOKEN_LABEL");
        tc.sessions = 2;
        token = std::make_unique<kw::token::Token>(tc);
        token->login(kw::token::SecretString(env("KEYWARDEN_PIN")));
        if (init) (void)core::init_root_keys(*token);
        roots = core::load_root_keys(*token);
        const std::string url = env("KEYWARDEN_STORE_URL");
        store = core::open_store(url);
        sink = std::make_unique<core::audit::SqliteSink>(core::audit::sqlite_path_from_url(url),
                                                         core::audit::Durability::process);
        audit_keys = std::make_unique<core::audit::Keys>(*token, roots);
        core::audit::LogOptions lo;
        lo.checkpoint_every = 200;
        log = std::make_unique<core::audit::Log>(*sink, *audit_keys, clock, lo);
        keys = std::make_unique<core::KeyService>(*token, *store, roots, clock, *log, "test:rotation_runner");
        tokens = std::make_unique<core::tokens::TokenService>(*keys);
    }
    ~World() {
        tokens.reset();
        keys.reset();
        log.reset();
        audit_keys.reset();
        sink.reset();
        store.reset();
        token.reset();
    }
    World(const World&) = delete;
    World& operator=(const World&) = delete;
};

nlohmann::json rotation_json(const core::RotationRecord& r) {
    return {{"id", r.id},           {"key", r.key_name}, {"strategy", r.strategy}, {"state", r.state},
            {"outcome", r.outcome}, {"error", r.error},  {"from_kid", r.from_kid}, {"to_kid", r.to_kid}};
}

// ---------------------------------------------------------------- setup

int cmd_setup(int argc, char** argv) {
    if (argc < 3) throw core::Error(core::ErrorKind::invalid_argument, "usage: rotation_runner setup N [PREFIX]");
    const int n = std::atoi(argv[2]);
    const std::string prefix = argc > 3 ? argv[3] : "k";
    if (n < 1 || n > 100) throw core::Error(core::ErrorKind::invalid_argument, "setup: N must be 1..100");
    World w(true);
    for (int i = 1; i <= n; ++i) {
        const std::string suffix = "-" + std::to_string(i);
        core::GenerateRequest h;
        h.name = prefix + "-hmac" + suffix;
        h.type = core::KeyType::hmac;
        core::GenerateRequest e;
        e.name = prefix + "-ecdsa" + suffix;
        e.type = core::KeyType::ecdsa;
        e.curve = core::Curve::p256;
        core::GenerateRequest r;
        r.name = prefix + "-rsa" + suffix;
        r.type = core::KeyType::rsa;
        r.rsa_bits = 2048;
        r.residency = core::Residency::token;
        core::GenerateRequest d;
        d.name = prefix + "-ed" + suffix;
        d.type = core::KeyType::ed25519;
        d.residency = core::Residency::token;
        d.allow_token_fallback = false;
        for (auto* req : {&h, &e, &r, &d}) {
            auto k = w.keys->generate(*req);
            std::cout << "created " << k.name << " " << core::to_string(k.versions.front().residency) << " "
                      << k.versions.front().kid << "\n";
        }
    }
    return 0;
}

// ---------------------------------------------------------------- rotate

rot::PolicySet policy_for(const std::string& name, rot::Strategy s, std::int64_t wait) {
    const std::string w = std::to_string(wait);
    std::string toml = "[[policy]]\nname = \"runner\"\ncryptoperiod = \"365d\"\nstrategy = \"" +
                       std::string(rot::to_string(s)) + "\"\nmatch = { name = " + nlohmann::json(name).dump() + " }\n";
    switch (s) {
        case rot::Strategy::immediate: break;
        case rot::Strategy::overlapping: toml += "overlap = " + w + "\n"; break;
        case rot::Strategy::gradual:
            toml += "[policy.gradual]\nphases = [{share = 10, duration = " + w + "}, {share = 50, duration = " + w +
                    "}, {share = 100, duration = " + w + "}]\n";
            break;
        case rot::Strategy::blue_green: toml += "[policy.blue_green]\nrollback_window = " + w + "\n"; break;
    }
    return rot::PolicySet::parse(toml, "rotation_runner");
}

int cmd_rotate(int argc, char** argv) {
    if (argc < 4)
        throw core::Error(core::ErrorKind::invalid_argument, "usage: rotation_runner rotate NAME STRATEGY [WAIT]");
    const std::string name = argv[2];
    auto strategy = rot::parse_strategy(argv[3]);
    if (!strategy) throw core::Error(core::ErrorKind::invalid_argument, std::string("unknown strategy ") + argv[3]);
    const std::int64_t wait = argc > 4 ? std::atoll(argv[4]) : 0;
    World w(false);
    rot::PolicySet set = policy_for(name, *strategy, wait);
    rot::Engine engine(*w.keys, *w.tokens, set, rot::EngineOptions{owner_id(), 300});
    auto result = engine.rotate(name, strategy);
    std::cout << rotation_json(result.record).dump() << "\n";
    return result.record.outcome == "failed" ? 3 : 0;
}

// ---------------------------------------------------------------- loop

bool matches_any(const std::string& name, const std::string& globs) {
    if (globs.empty()) return true;
    std::size_t start = 0;
    while (start <= globs.size()) {
        const std::size_t comma = std::min(globs.find(',', start), globs.size());
        const std::string glob = globs.substr(start, comma - start);
        if (!glob.empty() && fnmatch(glob.c_str(), name.c_str(), 0) == 0) return true;
        start = comma + 1;
    }
    return false;
}

int cmd_loop(const std::string& globs) {
    World w(false);
    rot::PolicySet none;
    rot::Engine engine(*w.keys, *w.tokens, none, rot::EngineOptions{owner_id(), 300});
    std::mt19937 rng(static_cast<unsigned>(getpid()) ^
                     static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
    // Logged in: from here on a kill lands in rotation work. (SoftHSM's
    // file store rewrites token.object in place on every C_Login to update
    // the PIN flags; a SIGKILL during that write leaves the token
    // uninitialised, which is SoftHSM's crash safety, not the engine's.)
    std::printf("ready\n");
    std::fflush(stdout);
    for (std::uint64_t round = 1;; ++round) {
        auto keys = w.store->list_keys();
        std::shuffle(keys.begin(), keys.end(), rng);
        for (const auto& k : keys) {
            if (!matches_any(k.name, globs)) continue;
            try {
                auto r = engine.rotate(k.name, rot::Strategy::immediate);
                std::printf("rotated %s %s %s\n", k.name.c_str(), r.record.to_kid.c_str(), r.record.outcome.c_str());
            } catch (const core::Error& e) {
                // A key with a rotation still waiting on its window, or one
                // whose lease is held elsewhere: skip it this round.
                if (e.kind() != core::ErrorKind::already_exists && e.kind() != core::ErrorKind::store_locked) throw;
                std::printf("skipped %s: %s\n", k.name.c_str(), e.what());
            }
            std::fflush(stdout);
        }
        auto touched = engine.run_due();
        std::printf("round %llu: run_due touched %zu\n", static_cast<unsigned long long>(round), touched.size());
        std::fflush(stdout);
    }
}

// ---------------------------------------------------------------- recover

int cmd_recover() {
    World w(false);
    rot::PolicySet none;
    rot::Engine engine(*w.keys, *w.tokens, none, rot::EngineOptions{owner_id(), 300});
    const auto open_before = w.store->open_rotations();
    auto touched = engine.run_due();
    nlohmann::json t = nlohmann::json::array();
    for (const auto& r : touched) t.push_back(rotation_json(r));
    nlohmann::json open = nlohmann::json::array();
    for (const auto& r : w.store->open_rotations()) open.push_back(rotation_json(r));
    nlohmann::json before = nlohmann::json::array();
    for (const auto& r : open_before) before.push_back(rotation_json(r));
    std::cout << nlohmann::json{{"open_before", before}, {"touched", t}, {"open_after", open}}.dump() << "\n";
    return 0;
}

// ---------------------------------------------------------------- check

bool looks_like_kid(const std::vector<std::uint8_t>& id) {
    if (id.size() != 13) return false;
    return std::all_of(id.begin(), id.end(), [](std::uint8_t c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    });
}

struct TokenObject {
    CK_OBJECT_HANDLE handle;
    CK_OBJECT_CLASS cls;
    std::string id;
};

int cmd_check() {
    World w(false);
    std::vector<std::string> problems;
    auto problem = [&](std::string p) { problems.push_back(std::move(p)); };
    const core::UnixTime now = w.clock.now();

    // Every token object with a kid-like CKA_ID.
    std::map<std::string, std::vector<TokenObject>> objects_by_kid;
    std::size_t token_objects = 0;
    {
        auto lease = w.token->session();
        const auto& s = lease.session();
        kw::token::Template all;
        all.add_bool(CKA_TOKEN, true);
        for (CK_OBJECT_HANDLE h : kw::token::find_objects(s, all.span(), 1000000)) {
            ++token_objects;
            std::vector<std::uint8_t> id;
            try {
                id = kw::token::get_attribute(s, h, CKA_ID);
            } catch (const std::exception&) {
                continue;  // no CKA_ID: not a managed key (root keys have none)
            }
            if (!looks_like_kid(id)) continue;
            CK_OBJECT_CLASS cls = kw::token::get_ulong(s, h, CKA_CLASS);
            std::string kid(id.begin(), id.end());
            objects_by_kid[kid].push_back({h, cls, kid});
        }
    }

    const auto keys = w.store->list_keys();
    const auto open = w.store->open_rotations();
    std::map<std::string, const core::RotationRecord*> open_by_key;
    for (const auto& r : open) {
        if (open_by_key.count(r.key_id)) problem("key " + r.key_name + " has two open rotations");
        open_by_key[r.key_id] = &r;
    }
    std::set<std::string> all_kids;
    std::size_t versions = 0;
    for (const auto& k : keys) {
        const std::string kn = "key " + k.name + ": ";
        const bool token_key = k.type == core::KeyType::api_token || k.type == core::KeyType::provisioning;
        int primaries = 0;
        std::set<int> numbers;
        const core::RotationRecord* r = open_by_key.count(k.id) ? open_by_key[k.id] : nullptr;
        for (const auto& v : k.versions) {
            ++versions;
            const std::string vn = kn + "version " + std::to_string(v.version) + " " + v.kid + " (" +
                                   std::string(core::to_string(v.state)) + ", " +
                                   std::string(core::to_string(v.residency)) + "): ";
            if (!all_kids.insert(v.kid).second) problem(vn + "kid used twice");
            if (!numbers.insert(v.version).second) problem(vn + "version number used twice");
            if (v.primary) {
                ++primaries;
                if (v.state != core::VersionState::active && !k.revoked_at) problem(vn + "is primary but not active");
            }
            const bool destroyed = v.state == core::VersionState::destroyed;
            const auto it = objects_by_kid.find(v.kid);
            const std::size_t n_objects = it == objects_by_kid.end() ? 0 : it->second.size();
            if (!token_key) {
                if (destroyed) {
                    if (!v.wrapped_blob.empty()) problem(vn + "destroyed, but its wrapped blob is still stored");
                    if (n_objects != 0)
                        problem(vn + "destroyed, but " + std::to_string(n_objects) + " token objects remain");
                } else if (v.residency == core::Residency::wrapped) {
                    if (v.wrapped_blob.empty()) problem(vn + "has no wrapped blob: the record points at nothing");
                    if (n_objects != 0)
                        problem(vn + "wrapped, yet has " + std::to_string(n_objects) + " token objects");
                } else {
                    bool key_object = false;
                    if (it != objects_by_kid.end()) {
                        for (const auto& o : it->second)
                            key_object = key_object || o.cls == CKO_PRIVATE_KEY || o.cls == CKO_SECRET_KEY;
                    }
                    if (!key_object)
                        problem(vn + "has no private/secret key object in the token: the record points at nothing");
                }
            }
            // Nothing half made or half retired outside an open rotation.
            if (v.state == core::VersionState::pre_active && (r == nullptr || r->to_kid != v.kid)) {
                problem(vn + "pre_active without an open rotation that is making it");
            }
            if (v.state == core::VersionState::active && !v.primary &&
                (r == nullptr || (r->from_kid != v.kid && r->to_kid != v.kid))) {
                problem(vn + "active but not primary, and no open rotation explains it");
            }
        }
        if (!k.revoked_at && primaries != 1) problem(kn + std::to_string(primaries) + " primary versions");
        if (k.rollout_kid) {
            const core::KeyVersion* rv = k.version_by_kid(*k.rollout_kid);
            if (r == nullptr || r->state != "phasing" || r->to_kid != *k.rollout_kid) {
                problem(kn + "rollout to " + *k.rollout_kid + " without an open GRADUAL rotation in its phases");
            } else if (rv == nullptr || rv->state != core::VersionState::active) {
                problem(kn + "rollout to " + *k.rollout_kid + ", which is not an active version");
            }
        }
    }
    for (const auto& [kid, objs] : objects_by_kid) {
        bool ok = false;
        for (const auto& k : keys) {
            if (const core::KeyVersion* v = k.version_by_kid(kid);
                v != nullptr && v->residency == core::Residency::token && v->state != core::VersionState::destroyed) {
                ok = true;
            }
        }
        if (!ok)
            problem("token object(s) with CKA_ID " + kid + " (" + std::to_string(objs.size()) +
                    ") belong to no live token-residency version");
    }

    // Open rotations: only those waiting on a time window.
    for (const auto& r : open) {
        const std::string rn =
            "rotation #" + std::to_string(r.id) + " of " + r.key_name + " (" + r.strategy + ", " + r.state + "): ";
        auto key = w.store->find_key(r.key_name);
        if (!key) {
            problem(rn + "its key is gone");
            continue;
        }
        const core::KeyVersion* from = key->version_by_kid(r.from_kid);
        const core::KeyVersion* to = key->version_by_kid(r.to_kid);
        const rot::Params p = rot::Params::from_json(r.params);
        if (to == nullptr) {
            problem(rn + "open, but its new version " + r.to_kid + " does not exist");
            continue;
        }
        if (from == nullptr || from->state != core::VersionState::active) problem(rn + "the old version is not active");
        if (r.state == "published") {
            if (now >= r.published_at.value_or(0) + p.jwks_lead) problem(rn + "left open after its JWKS lead time");
            if (!from || !from->primary) problem(rn + "published, but the old version is not primary");
        } else if (r.state == "phasing") {
            const std::int64_t d = static_cast<std::size_t>(r.phase) < p.phases.size() ? p.phases[r.phase].duration : 0;
            if (now >= r.phase_started_at.value_or(0) + d) problem(rn + "left open after its phase ended");
            if (!from || !from->primary) problem(rn + "phasing, but the old version is not primary");
            if (to->state != core::VersionState::active) problem(rn + "phasing, but the new version is not active");
        } else if (r.state == "promoted") {
            std::int64_t wait = 0;
            switch (p.strategy) {
                case rot::Strategy::immediate: wait = 0; break;
                case rot::Strategy::overlapping: wait = p.overlap; break;
                case rot::Strategy::blue_green: wait = p.rollback_window; break;
                case rot::Strategy::gradual: wait = p.phases.empty() ? 0 : p.phases.back().duration; break;
            }
            const core::UnixTime since = r.strategy == "GRADUAL"
                                             ? r.phase_started_at.value_or(r.promoted_at.value_or(0))
                                             : r.promoted_at.value_or(0);
            bool quiet_wait = false;
            if (p.quiet_time > 0) {
                auto last = w.store->last_used(r.from_kid);
                quiet_wait = last && now - *last < p.quiet_time;
            }
            if (now >= since + wait && !quiet_wait) problem(rn + "left open after its window closed");
            if (!to->primary) problem(rn + "promoted, but the new version is not primary");
        } else {
            problem(rn + "left open in a state that waits for nothing");
        }
    }

    // Finished rotations left their versions consistent.
    for (const auto& r : w.store->rotation_history("", 1000000)) {
        if (!r.finished_at) continue;
        auto key = w.store->find_key(r.key_name);
        if (!key) continue;
        const std::string rn = "rotation #" + std::to_string(r.id) + " of " + r.key_name + " (" + r.outcome + "): ";
        const core::KeyVersion* from = key->version_by_kid(r.from_kid);
        const core::KeyVersion* to = key->version_by_kid(r.to_kid);
        if (r.outcome == "success") {
            if (to == nullptr) problem(rn + "succeeded, but its new version does not exist");
            if (from != nullptr &&
                (from->state == core::VersionState::active || from->state == core::VersionState::pre_active ||
                 from->state == core::VersionState::suspended)) {
                problem(rn + "succeeded, but the old version is still " + std::string(core::to_string(from->state)));
            }
        } else if (r.outcome == "failed" || r.outcome == "rolled_back") {
            if (to != nullptr &&
                (to->primary || core::can_sign(to->state) || to->state == core::VersionState::pre_active)) {
                problem(rn + "the withdrawn version is still " + std::string(core::to_string(to->state)) +
                        (to->primary ? " and primary" : ""));
            }
        } else {
            problem(rn + "finished with unknown outcome '" + r.outcome + "'");
        }
    }

    // The audit chain, every MAC checked in the token.
    core::audit::VerifyOptions vo;
    vo.public_key = w.audit_keys->public_key();
    vo.check_mac = [&](const std::string& h, const std::string& m) { return w.audit_keys->check_mac(h, m); };
    vo.find_hash = [&](const std::string& h) { return w.sink->seq_of_hash(h); };
    core::audit::Verifier verifier(w.sink->checkpoints(), vo);
    w.sink->for_each([&](const core::audit::Event& e) { return verifier.feed(e); });
    const core::audit::Report report = verifier.finish();
    if (!report.ok) problem("audit chain: " + report.message);

    if (!problems.empty()) {
        for (const auto& p : problems) std::cout << "BROKEN: " << p << "\n";
        std::cout << "check: " << problems.size() << " invariant(s) broken\n";
        return 1;
    }
    std::cout << "check: OK (" << keys.size() << " keys, " << versions << " versions, " << objects_by_kid.size()
              << " kids in " << token_objects << " token objects, " << open.size() << " open rotations waiting, "
              << report.events << " audit events verified)\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(
            stderr,
            "usage: rotation_runner setup N [PREFIX] | rotate NAME STRATEGY [WAIT] | loop [GLOBS] | recover | check\n");
        return 2;
    }
    const std::string cmd = argv[1];
    try {
        if (cmd == "setup") return cmd_setup(argc, argv);
        if (cmd == "rotate") return cmd_rotate(argc, argv);
        if (cmd == "loop") return cmd_loop(argc > 2 ? argv[2] : "");
        if (cmd == "recover") return cmd_recover();
        if (cmd == "check") return cmd_check();
        std::fprintf(stderr, "rotation_runner: unknown command '%s'\n", cmd.c_str());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rotation_runner %s: %s\n", cmd.c_str(), e.what());
        return 1;
    }
}
