// keywarden rotation benchmark: Engine::rotate (OVERLAPPING) over many keys
// against generating the same number of key versions with no rotation
// bookkeeping (KeyService::make_version: token keygen + public key read +
// wrap), measured in the same run.
//
//   rotation_bench --dir DIR [--json FILE]
//
// Wired like tools/hsm-keytool/context.cpp: SQLite store, the audit log in
// the same file (SqliteSink, durability "process", group-commit Log),
// KeyService, TokenService, no policies (so OVERLAPPING with the default
// 24 h overlap: each rotation runs planned -> generated -> published ->
// promoted and stops there, the old version still verifying).
//
// The two variants alternate in chunks of keys (baseline first in even
// chunks, rotation first in odd ones), so drift on a shared machine hits both
// alike. Run it through bench/run.sh, which makes a private SoftHSM token;
// the binary refuses to run without SOFTHSM2_CONF.
//
// Environment knobs:
//   KW_BENCH_ROTATE_HMAC    HMAC keys to rotate (default 1000)
//   KW_BENCH_ROTATE_ECDSA   ECDSA P-256 keys to rotate (default 100)
//   KW_BENCH_ROTATE_CHUNKS  chunks the variants alternate in (default 10)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/clock.hpp"
#include "core/key_service.hpp"
#include "core/root_keys.hpp"
#include "core/rotation/engine.hpp"
#include "core/rotation/policy.hpp"
#include "core/store/store.hpp"
#include "core/tokens/token_service.hpp"
#include "token/pin.hpp"
#include "token/token.hpp"

namespace {

namespace core = kw::core;
using SteadyClock = std::chrono::steady_clock;
using json = nlohmann::json;

struct Settings {
    std::string dir;
    std::string json_path;
    std::size_t hmac = 1000;
    std::size_t ecdsa = 100;
    std::size_t chunks = 10;
};

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return (v != nullptr && *v != '\0') ? std::string(v) : fallback;
}

Settings parse_settings(int argc, char** argv) {
    Settings s;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if ((a == "--dir" || a == "--json") && i + 1 < argc) {
            (a == "--dir" ? s.dir : s.json_path) = argv[++i];
        } else {
            throw std::invalid_argument("usage: rotation_bench --dir DIR [--json FILE] (unknown argument " + a + ")");
        }
    }
    if (s.dir.empty()) throw std::invalid_argument("--dir DIR is required (a scratch directory for the store)");
    s.hmac = std::stoul(env_or("KW_BENCH_ROTATE_HMAC", "1000"));
    s.ecdsa = std::stoul(env_or("KW_BENCH_ROTATE_ECDSA", "100"));
    s.chunks = std::max<std::size_t>(1, std::stoul(env_or("KW_BENCH_ROTATE_CHUNKS", "10")));
    return s;
}

double seconds_since(SteadyClock::time_point t0) {
    return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

double pct_ms(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k] * 1e3;
}

void progress(const std::string& line) {
    std::fprintf(stderr, "  .. %s\n", line.c_str());
    std::fflush(stderr);
}

std::unique_ptr<kw::token::Token> open_token() {
    if (std::getenv("SOFTHSM2_CONF") == nullptr) {
        throw std::runtime_error("SOFTHSM2_CONF is not set: run through bench/run.sh, which makes a private token");
    }
    kw::token::TokenConfig tc;
    tc.module_path = env_or("KEYWARDEN_HSM_MODULE", "");
    tc.selector.label = env_or("KEYWARDEN_TOKEN_LABEL", "keywarden");
    tc.sessions = 2;
    auto token = std::make_unique<kw::token::Token>(tc);
    kw::token::PinSource ps;
    if (const char* f = std::getenv("KEYWARDEN_PIN_FILE")) ps.file = f;
    token->login(kw::token::read_pin(ps));
    (void)core::init_root_keys(*token);  // idempotent
    return token;
}

// Everything a rotation needs, wired as hsm-keytool wires it, torn down in
// reverse order.
struct Service {
    Service(kw::token::Token& token, const std::string& path)
        : roots(core::load_root_keys(token)),
          store(core::open_store("sqlite:" + path)),
          sink(path, core::audit::Durability::process),
          audit_keys(token, roots),
          audit_log(sink, audit_keys, clock),
          ks(token, *store, roots, clock, audit_log, "bench"),
          tokens(ks),
          engine(ks, tokens, policies, core::rotation::EngineOptions{"bench:" + std::to_string(getpid()), 300}) {}
    core::RootKeys roots;
    std::unique_ptr<core::Store> store;
    core::SystemClock clock;
    core::audit::SqliteSink sink;
    core::audit::Keys audit_keys;
    core::audit::Log audit_log;
    core::KeyService ks;
    core::tokens::TokenService tokens;
    core::rotation::PolicySet policies;
    core::rotation::Engine engine;
};

struct Timing {
    std::vector<double> per_key_s;
    double total_s = 0;
    [[nodiscard]] double ms_per_key() const {
        return per_key_s.empty() ? 0 : 1e3 * total_s / static_cast<double>(per_key_s.size());
    }
    [[nodiscard]] double keys_per_s() const {
        return total_s > 0 ? static_cast<double>(per_key_s.size()) / total_s : 0;
    }
    [[nodiscard]] json to_json() const {
        return {{"keys", per_key_s.size()},         {"seconds", total_s},
                {"ms_per_key", ms_per_key()},       {"keys_per_s", keys_per_s()},
                {"p50_ms", pct_ms(per_key_s, 0.5)}, {"p99_ms", pct_ms(per_key_s, 0.99)}};
    }
};

void print_row(const std::string& name, const Timing& t, const std::string& last) {
    std::printf("  %-50s %6zu %9.2f %9.3f %9.3f %9.3f %9s\n", name.c_str(), t.per_key_s.size(), t.total_s,
                t.ms_per_key(), pct_ms(t.per_key_s, 0.5), pct_ms(t.per_key_s, 0.99), last.c_str());
    std::fflush(stdout);
}

json run_type(Service& svc, const Settings& st, core::KeyType type, std::size_t count, const std::string& label) {
    core::KeyService& ks = svc.ks;
    std::vector<std::string> names;
    names.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        char buf[48];
        std::snprintf(buf, sizeof buf, "rot-%s-%05zu", label.c_str(), i);
        names.emplace_back(buf);
    }
    // Set-up (timed, reported for reference): the keys to rotate, version 1.
    Timing gen;
    auto t_all = SteadyClock::now();
    for (const auto& n : names) {
        core::GenerateRequest r;
        r.name = n;
        r.type = type;
        r.residency = core::Residency::wrapped;
        r.allow_token_fallback = false;
        const auto t0 = SteadyClock::now();
        (void)ks.generate(r);
        gen.per_key_s.push_back(seconds_since(t0));
    }
    gen.total_s = seconds_since(t_all);
    progress("generated " + std::to_string(count) + " " + label + " keys");

    // The baseline works on the keys as they were before rotation (read
    // outside the timing): make_version makes version 2's material in the
    // token and wraps it; nothing is stored, so the keys are left as they are.
    std::vector<core::ManagedKey> before;
    before.reserve(count);
    for (const auto& n : names) before.push_back(ks.get(n));

    Timing base, rot;
    std::uint64_t audit_events = 0;
    std::size_t not_promoted = 0;
    const std::size_t chunk = (count + st.chunks - 1) / st.chunks;
    for (std::size_t c = 0, lo = 0; lo < count; ++c, lo += chunk) {
        const std::size_t hi = std::min(count, lo + chunk);
        auto baseline = [&] {
            const auto t1 = SteadyClock::now();
            for (std::size_t i = lo; i < hi; ++i) {
                const auto t0 = SteadyClock::now();
                core::KeyVersion v = ks.make_version(before[i], 2, core::Residency::wrapped);
                if (v.wrapped_blob.empty()) throw std::runtime_error("make_version produced no wrapped blob");
                base.per_key_s.push_back(seconds_since(t0));
            }
            base.total_s += seconds_since(t1);
        };
        auto rotate = [&] {
            const std::uint64_t seq0 = svc.audit_log.head_seq();
            const auto t1 = SteadyClock::now();
            for (std::size_t i = lo; i < hi; ++i) {
                const auto t0 = SteadyClock::now();
                auto res = svc.engine.rotate(names[i], core::rotation::Strategy::overlapping);
                rot.per_key_s.push_back(seconds_since(t0));
                if (res.record.state != "promoted") ++not_promoted;
            }
            rot.total_s += seconds_since(t1);
            audit_events += svc.audit_log.head_seq() - seq0;
        };
        if (c % 2 == 0) {
            baseline();
            rotate();
        } else {
            rotate();
            baseline();
        }
    }
    if (not_promoted != 0) {
        throw std::runtime_error(std::to_string(not_promoted) + " rotations did not reach 'promoted'");
    }
    // Sanity: the new version signs now, the old one still verifies.
    {
        const std::vector<std::uint8_t> msg{'k', 'w'};
        const auto key = ks.get(names.front());
        if (key.primary() == nullptr || key.primary()->version != 2 || key.versions.size() != 2) {
            throw std::runtime_error("after rotation " + names.front() + " does not have version 2 as primary");
        }
        auto s = ks.sign(names.front(), msg);
        if (s.kid == before.front().primary()->kid) throw std::runtime_error("the old version still signs");
    }
    const double ratio = rot.ms_per_key() / base.ms_per_key();
    const double events_per_rotation = static_cast<double>(audit_events) / static_cast<double>(count);
    print_row("KeyService::generate (set-up: version 1)", gen, "-");
    print_row("baseline: KeyService::make_version (keygen+wrap)", base, "1.00x");
    char r[32];
    std::snprintf(r, sizeof r, "%.2fx", ratio);
    print_row("Engine::rotate OVERLAPPING (to 'promoted')", rot, r);
    std::printf(
        "  %s: rotation bookkeeping adds %.2f ms per key (%.0f%% of a rotation); %.1f audit events per rotation\n",
        label.c_str(), rot.ms_per_key() - base.ms_per_key(), 100 * (1 - 1 / ratio), events_per_rotation);
    std::fflush(stdout);
    return {{"type", label},
            {"keys", count},
            {"generate_setup", gen.to_json()},
            {"baseline_make_version", base.to_json()},
            {"rotate", rot.to_json()},
            {"ratio_rotate_to_baseline", ratio},
            {"overhead_ms_per_key", rot.ms_per_key() - base.ms_per_key()},
            {"audit_events_per_rotation", events_per_rotation}};
}

int run(const Settings& st) {
    auto token = open_token();
    Service svc(*token, st.dir + "/rotation.db");
    std::printf(
        "\nRotation: Engine::rotate (OVERLAPPING) per key vs generating the same versions without bookkeeping\n");
    std::printf("  (store and audit log: SQLite, one file, WAL; audit durability 'process'; %zu alternating chunks)\n",
                st.chunks);
    std::printf("  %-50s %6s %9s %9s %9s %9s %9s\n", "variant", "keys", "total s", "ms/key", "p50 ms", "p99 ms",
                "vs base");
    std::printf("  %s\n", std::string(106, '-').c_str());
    json types = json::array();
    const auto t0 = SteadyClock::now();
    if (st.hmac > 0) types.push_back(run_type(svc, st, core::KeyType::hmac, st.hmac, "hmac"));
    if (st.ecdsa > 0) types.push_back(run_type(svc, st, core::KeyType::ecdsa, st.ecdsa, "ecdsa-p256"));
    double rot_total = 0, base_total = 0;
    for (const auto& t : types) {
        rot_total += t["rotate"]["seconds"].get<double>();
        base_total += t["baseline_make_version"]["seconds"].get<double>();
    }
    std::printf("  all %zu rotations: %.1f s (baseline %.1f s, %.2fx); phase time %.1f s\n", st.hmac + st.ecdsa,
                rot_total, base_total, base_total > 0 ? rot_total / base_total : 0.0, seconds_since(t0));
    if (!st.json_path.empty()) {
        std::ofstream out(st.json_path);
        out << json{{"phase", "rotation"},
                    {"strategy", "OVERLAPPING"},
                    {"chunks", st.chunks},
                    {"audit_durability", "process"},
                    {"types", types},
                    {"rotate_total_seconds", rot_total},
                    {"baseline_total_seconds", base_total}}
                   .dump(2)
            << "\n";
        if (!out) throw std::runtime_error("cannot write " + st.json_path);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse_settings(argc, argv));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rotation_bench: %s\n", e.what());
        return 1;
    }
}
