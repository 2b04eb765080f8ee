// keywarden foundation benchmarks: the token layer and KeyService measured
// against raw PKCS#11 calls on the same token in the same run.
//
//   token_bench sign              --dir DIR [--json FILE]
//   token_bench scale-keyservice  --dir DIR [--json FILE]
//   token_bench scale-softhsm     --dir DIR [--json FILE]
//
// Run it through bench/run.sh (or `./dev bench`), which creates a private
// SoftHSM token and runs each phase in its own process, so the objects one
// phase leaves in the token (session objects die with their process) cannot
// skew the next. The binary refuses to run without SOFTHSM2_CONF set, so it
// never touches the system token.
//
// Environment knobs:
//   KW_BENCH_SECONDS        measured time per variant (default 1.5 s)
//   KW_BENCH_ROUNDS         rounds the variants alternate in (default 3)
//   KW_BENCH_SIZES          key counts for the scale phases (default 100,1000,10000)
//   KW_BENCH_CREATE_BUDGET  seconds allowed for creating SoftHSM token objects
//                           in scale-softhsm (default 180); the phase stops
//                           growing when it runs out and says so
//
// This is a benchmark, not a test: the only failures are broken set-up or a
// signature that does not match its baseline (that would make the comparison
// meaningless).
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/key_service.hpp"
#include "core/root_keys.hpp"
#include "core/store/store.hpp"
#include "token/error.hpp"
#include "token/keygen.hpp"
#include "token/object.hpp"
#include "token/pin.hpp"
#include "token/pkcs11.hpp"
#include "token/sign.hpp"
#include "token/token.hpp"

// KeyService audits every operation once the audit log exists (it is being
// built as this is written). The benchmark gives it a sink that keeps
// nothing, so the KeyService rows measure lookup + cached handle + sign plus
// the audit hand-off (event hash, in-token MAC, writer-thread round trip),
// but no audit storage: that is for the "Audit log" benchmark.
#if __has_include("core/audit/log.hpp")
#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sink.hpp"
#define KW_BENCH_AUDIT 1
#else
#define KW_BENCH_AUDIT 0
#endif

namespace {

using SteadyClock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr std::size_t kMessageBytes = 256;  // about a JWT signing input

// ---------------------------------------------------------------- settings

struct Settings {
    std::string phase;
    std::string dir;
    std::string json_path;
    double seconds = 1.5;
    int rounds = 3;
    std::vector<std::size_t> sizes{100, 1000, 10000};
    double create_budget = 180.0;
};

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return (v != nullptr && *v != '\0') ? std::string(v) : fallback;
}

std::vector<std::size_t> parse_sizes(const std::string& text) {
    std::vector<std::size_t> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t comma = text.find(',', pos);
        if (comma == std::string::npos) comma = text.size();
        out.push_back(std::stoul(text.substr(pos, comma - pos)));
        pos = comma + 1;
    }
    std::sort(out.begin(), out.end());
    if (out.empty() || out.front() == 0) throw std::invalid_argument("KW_BENCH_SIZES: need positive counts");
    return out;
}

Settings parse_settings(int argc, char** argv) {
    Settings s;
    if (argc < 2)
        throw std::invalid_argument("usage: token_bench sign|scale-keyservice|scale-softhsm --dir DIR [--json FILE]");
    s.phase = argv[1];
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        if ((a == "--dir" || a == "--json") && i + 1 < argc) {
            (a == "--dir" ? s.dir : s.json_path) = argv[++i];
        } else {
            throw std::invalid_argument("unknown argument: " + a);
        }
    }
    if (s.dir.empty()) throw std::invalid_argument("--dir DIR is required (a scratch directory for stores)");
    s.seconds = std::stod(env_or("KW_BENCH_SECONDS", "1.5"));
    s.rounds = std::max(1, std::stoi(env_or("KW_BENCH_ROUNDS", "3")));
    s.sizes = parse_sizes(env_or("KW_BENCH_SIZES", "100,1000,10000"));
    s.create_budget = std::stod(env_or("KW_BENCH_CREATE_BUDGET", "180"));
    return s;
}

// ------------------------------------------------------------- measurement

volatile std::uint8_t g_sink = 0;  // keeps results observable to the optimiser
void sink(const std::uint8_t* p, std::size_t n) {
    if (n != 0) g_sink = static_cast<std::uint8_t>(g_sink ^ p[0]);
}

double seconds_since(SteadyClock::time_point t0) {
    return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

// One measured variant. Throughput is the median of its rounds' ops/s;
// per-op latency percentiles come from every timed call.
struct Measure {
    std::string name;
    std::function<void()> op;
    std::vector<double> round_rates;
    std::vector<std::int64_t> lat_ns;
    std::uint64_t ops = 0;
    double seconds = 0;

    [[nodiscard]] double ops_per_s() const {
        if (round_rates.empty()) return 0;
        std::vector<double> r = round_rates;
        std::sort(r.begin(), r.end());
        return r.size() % 2 == 1 ? r[r.size() / 2] : (r[r.size() / 2 - 1] + r[r.size() / 2]) / 2;
    }
    [[nodiscard]] double us_per_op() const { return ops_per_s() > 0 ? 1e6 / ops_per_s() : 0; }
    [[nodiscard]] double pct_us(double p) const {
        if (lat_ns.empty()) return 0;
        std::vector<std::int64_t> l = lat_ns;
        auto k = static_cast<std::size_t>(p * static_cast<double>(l.size() - 1));
        std::nth_element(l.begin(), l.begin() + static_cast<std::ptrdiff_t>(k), l.end());
        return static_cast<double>(l[k]) / 1000.0;
    }
    [[nodiscard]] json to_json() const {
        return json{{"name", name},          {"ops_per_s", ops_per_s()},      {"us_per_op", us_per_op()},
                    {"p50_us", pct_us(0.5)}, {"p99_us", pct_us(0.99)},        {"ops", ops},
                    {"seconds", seconds},    {"round_ops_per_s", round_rates}};
    }
};

// Calls op back to back for `secs` (and at least min_ops times), timing each
// call with steady_clock. One clock read per call: the end of one call is the
// start of the next.
void run_round(Measure& m, double secs, std::uint64_t min_ops) {
    const auto start = SteadyClock::now();
    const auto budget = std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(secs));
    auto prev = start;
    std::uint64_t n = 0;
    for (;;) {
        m.op();
        const auto now = SteadyClock::now();
        m.lat_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - prev).count());
        prev = now;
        ++n;
        if (n >= min_ops && now - start >= budget) break;
    }
    const double elapsed = std::chrono::duration<double>(prev - start).count();
    m.round_rates.push_back(static_cast<double>(n) / elapsed);
    m.ops += n;
    m.seconds += elapsed;
}

// Alternates the variants over `rounds` rounds, each getting seconds/rounds
// per round, so drift on a shared VM hits every variant alike. A short
// untimed warm-up first takes first-use costs out of the figures.
void measure_interleaved(const std::vector<Measure*>& ms, const Settings& st, std::uint64_t min_ops = 3) {
    for (Measure* m : ms) {
        const auto t0 = SteadyClock::now();
        do {
            m->op();
        } while (seconds_since(t0) < 0.05);
    }
    const double per_round = st.seconds / st.rounds;
    for (int r = 0; r < st.rounds; ++r) {
        for (Measure* m : ms) run_round(*m, per_round, min_ops);
    }
}

void print_header(const std::string& title, const char* last_col) {
    std::printf("\n%s\n", title.c_str());
    std::printf("  %-46s %11s %10s %10s %10s %9s\n", "variant", "ops/s", "us/op", "p50 us", "p99 us", last_col);
    std::printf("  %s\n", std::string(101, '-').c_str());
}

void print_row(const Measure& m, const std::string& last) {
    std::printf("  %-46s %11.0f %10.2f %10.2f %10.2f %9s\n", m.name.c_str(), m.ops_per_s(), m.us_per_op(),
                m.pct_us(0.5), m.pct_us(0.99), last.c_str());
    std::fflush(stdout);
}

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

void progress(const std::string& line) {
    std::fprintf(stderr, "  .. %s\n", line.c_str());
    std::fflush(stderr);
}

// ----------------------------------------------------- raw PKCS#11 baseline
//
// Direct calls on the function list of the very module the Token loaded, in
// a session of our own: no pool, no lease, no vectors, no exceptions on the
// hot path beyond the error check.

void must(const char* function, CK_RV rv) {
    if (rv != CKR_OK) throw kw::token::Pkcs11Error(function, rv);
}

class RawSession {
public:
    explicit RawSession(const kw::token::Token& token) : fn_(token.module().fn()) {
        must("C_OpenSession",
             fn_->C_OpenSession(token.info().slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h_));
    }
    ~RawSession() { fn_->C_CloseSession(h_); }
    RawSession(const RawSession&) = delete;
    RawSession& operator=(const RawSession&) = delete;

    [[nodiscard]] CK_FUNCTION_LIST* fn() const { return fn_; }
    [[nodiscard]] CK_SESSION_HANDLE h() const { return h_; }

    // C_SignInit + C_Sign into a caller's buffer; returns the signature length.
    std::size_t sign(CK_MECHANISM_TYPE mechanism, CK_OBJECT_HANDLE key, const std::uint8_t* data, std::size_t len,
                     std::uint8_t* out, std::size_t cap) const {
        CK_MECHANISM mech{mechanism, nullptr, 0};
        must("C_SignInit", fn_->C_SignInit(h_, &mech, key));
        CK_ULONG out_len = cap;
        must("C_Sign", fn_->C_Sign(h_, const_cast<CK_BYTE_PTR>(data), len, out, &out_len));
        return out_len;
    }

    // A 256-bit generic secret with CKA_SIGN, made the way the layer makes
    // HMAC keys (sensitive, private, non-extractable).
    CK_OBJECT_HANDLE generate_hmac_key(const std::string& label, bool token_object) const {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_GENERIC_SECRET;
        CK_ULONG value_len = 32;
        CK_BBOOL yes = CK_TRUE;
        CK_BBOOL no = CK_FALSE;
        CK_BBOOL tok = token_object ? CK_TRUE : CK_FALSE;
        std::vector<CK_ATTRIBUTE> t{
            {CKA_CLASS, &cls, sizeof cls},
            {CKA_KEY_TYPE, &type, sizeof type},
            {CKA_VALUE_LEN, &value_len, sizeof value_len},
            {CKA_TOKEN, &tok, sizeof tok},
            {CKA_PRIVATE, &yes, sizeof yes},
            {CKA_SENSITIVE, &yes, sizeof yes},
            {CKA_EXTRACTABLE, &no, sizeof no},
            {CKA_SIGN, &yes, sizeof yes},
            {CKA_VERIFY, &yes, sizeof yes},
            {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
        };
        CK_MECHANISM mech{CKM_GENERIC_SECRET_KEY_GEN, nullptr, 0};
        CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
        must("C_GenerateKey", fn_->C_GenerateKey(h_, &mech, t.data(), t.size(), &h));
        return h;
    }

    // C_FindObjectsInit(CKA_LABEL) + C_FindObjects + C_FindObjectsFinal;
    // expects exactly one match.
    CK_OBJECT_HANDLE find_by_label(const std::string& label) const {
        CK_ATTRIBUTE t{CKA_LABEL, const_cast<char*>(label.data()), label.size()};
        must("C_FindObjectsInit", fn_->C_FindObjectsInit(h_, &t, 1));
        CK_OBJECT_HANDLE found[2];
        CK_ULONG count = 0;
        CK_RV rv = fn_->C_FindObjects(h_, found, 2, &count);
        CK_RV final_rv = fn_->C_FindObjectsFinal(h_);
        must("C_FindObjects", rv);
        must("C_FindObjectsFinal", final_rv);
        if (count != 1)
            throw std::runtime_error("label " + label + ": " + std::to_string(count) + " matches, expected 1");
        return found[0];
    }

private:
    CK_FUNCTION_LIST* fn_;
    CK_SESSION_HANDLE h_ = CK_INVALID_HANDLE;
};

std::array<std::uint8_t, 32> sha256(const std::vector<std::uint8_t>& data) {
    std::array<std::uint8_t, 32> d{};
    unsigned len = 0;
    if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest failed");
    }
    return d;
}

// ------------------------------------------------------------------ set-up

std::unique_ptr<kw::token::Token> open_token() {
    if (std::getenv("SOFTHSM2_CONF") == nullptr) {
        throw std::runtime_error("SOFTHSM2_CONF is not set: run through bench/run.sh, which makes a private token");
    }
    kw::token::TokenConfig tc;
    tc.module_path = env_or("KEYWARDEN_HSM_MODULE", "");
    tc.selector.label = env_or("KEYWARDEN_TOKEN_LABEL", "keywarden");
    tc.sessions = 2;
    auto token = std::make_unique<kw::token::Token>(tc);
    token->login(kw::token::read_pin(kw::token::PinSource{}));
    (void)kw::core::init_root_keys(*token);  // idempotent: creates only what is missing
    return token;
}

std::vector<std::uint8_t> message() {
    std::vector<std::uint8_t> m(kMessageBytes);
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<std::uint8_t>(i * 131 + 7);
    return m;
}

std::vector<std::string> numbered(const std::string& prefix, std::size_t n) {
    std::vector<std::string> out;
    out.reserve(n);
    char buf[32];
    for (std::size_t i = 0; i < n; ++i) {
        std::snprintf(buf, sizeof buf, "%06zu", i);
        out.push_back(prefix + buf);
    }
    return out;
}

#if KW_BENCH_AUDIT
// Keeps only the chain head (so events chain as they would), drops the rest.
class DiscardSink final : public kw::core::audit::Sink {
public:
    std::optional<kw::core::audit::Event> last_event() override { return head_; }
    std::optional<kw::core::audit::Checkpoint> last_checkpoint() override { return checkpoint_; }
    void append(std::span<const kw::core::audit::Event> events,
                const std::optional<kw::core::audit::Checkpoint>& checkpoint) override {
        keep(events, checkpoint);
    }
    Batch append_at_head(
        const std::function<Batch(const std::optional<kw::core::audit::Event>&,
                                  const std::optional<kw::core::audit::Checkpoint>&)>& build) override {
        Batch b = build(head_, checkpoint_);
        keep(b.events, b.checkpoint);
        return b;
    }
    void for_each(const std::function<bool(const kw::core::audit::Event&)>&) override {}
    std::vector<kw::core::audit::Checkpoint> checkpoints() override { return {}; }
    std::vector<kw::core::audit::Event> query(const kw::core::audit::Query&) override { return {}; }

private:
    void keep(std::span<const kw::core::audit::Event> events, const std::optional<kw::core::audit::Checkpoint>& cp) {
        if (!events.empty()) head_ = events.back();
        if (cp) checkpoint_ = cp;
    }
    std::optional<kw::core::audit::Event> head_;
    std::optional<kw::core::audit::Checkpoint> checkpoint_;
};
constexpr const char* kAuditMode = "discarding sink (events hashed and MACed in the token, not stored)";
#else
constexpr const char* kAuditMode = "none (this build has no audit log)";
#endif

// A KeyService wired like tools/hsm-keytool/context.cpp: root keys, SQLite
// store, clock (and audit log), torn down in reverse order.
struct Service {
    Service(kw::token::Token& token, const std::string& store_path)
        : roots(kw::core::load_root_keys(token)),
          store(kw::core::open_store("sqlite:" + store_path))
#if KW_BENCH_AUDIT
          ,
          audit_keys(token, roots),
          audit_log(sink, audit_keys, clock),
          ks(token, *store, roots, clock, audit_log, "bench")
#else
          ,
          ks(token, *store, roots, clock)
#endif
    {
    }
    kw::core::RootKeys roots;
    std::unique_ptr<kw::core::Store> store;
    kw::core::SystemClock clock;
#if KW_BENCH_AUDIT
    DiscardSink sink;
    kw::core::audit::Keys audit_keys;
    kw::core::audit::Log audit_log;
#endif
    kw::core::KeyService ks;
};

void write_json(const Settings& st, const json& j) {
    if (st.json_path.empty()) return;
    std::ofstream out(st.json_path);
    out << j.dump(2) << "\n";
    if (!out) throw std::runtime_error("cannot write " + st.json_path);
}

// ------------------------------------------------ phase 1: sign throughput

int phase_sign(const Settings& st) {
    namespace tk = kw::token;
    namespace core = kw::core;
    auto token = open_token();
    Service svc(*token, st.dir + "/sign.db");
    core::KeyService& ks = svc.ks;
    const std::vector<std::uint8_t> msg = message();
    RawSession raw(*token);

    // Session objects generated through the layer: sensitive and
    // non-extractable like the unwrapped working copies KeyService signs
    // with. Raw and layer paths sign with the very same handle.
    tk::GeneratedKey hmac;
    tk::GeneratedKey ec;
    tk::GeneratedKey ed;
    tk::GeneratedKey rsa;
    {
        auto lease = token->session();
        const auto& s = lease.session();
        tk::KeyOptions o;
        o.token_object = false;
        o.extractable = false;
        o.label = "bench-hmac";
        hmac = tk::generate_key(s, {tk::KeyAlgorithm::generic_secret_256, 0}, o);
        o.label = "bench-ec";
        ec = tk::generate_key(s, {tk::KeyAlgorithm::ec_p256, 0}, o);
        o.label = "bench-ed25519";
        ed = tk::generate_key(s, {tk::KeyAlgorithm::ed25519, 0}, o);
        o.label = "bench-rsa";
        rsa = tk::generate_key(s, {tk::KeyAlgorithm::rsa, 2048}, o);
    }
    // The same HMAC key type as a token object, for one extra raw row: what
    // SoftHSM's file-backed object store costs per signature.
    const CK_OBJECT_HANDLE hmac_tokobj = raw.generate_hmac_key("bench-hmac-token-object", true);

    core::GenerateRequest gr;
    gr.name = "bench-sign-hmac";
    gr.type = core::KeyType::hmac;
    (void)ks.generate(gr);
    gr.name = "bench-sign-ecdsa";
    gr.type = core::KeyType::ecdsa;
    gr.curve = core::Curve::p256;
    (void)ks.generate(gr);

    // Sanity: the raw baseline does the same work as the layer.
    {
        std::uint8_t buf[512];
        auto lease = token->session();
        const auto& s = lease.session();
        std::size_t n = raw.sign(CKM_SHA256_HMAC, hmac.private_key.get(), msg.data(), msg.size(), buf, sizeof buf);
        if (tk::sign(s, hmac.private_key.get(), tk::SignMechanism::hmac_sha256, msg) !=
            std::vector<std::uint8_t>(buf, buf + n)) {
            throw std::runtime_error("sanity: raw and layer HMAC differ");
        }
        n = raw.sign(CKM_SHA256_RSA_PKCS, rsa.private_key.get(), msg.data(), msg.size(), buf, sizeof buf);
        if (tk::sign(s, rsa.private_key.get(), tk::SignMechanism::rsa_pkcs1_sha256, msg) !=
            std::vector<std::uint8_t>(buf, buf + n)) {
            throw std::runtime_error("sanity: raw and layer RSA PKCS#1 differ");
        }
        auto d = sha256(msg);
        n = raw.sign(CKM_ECDSA, ec.private_key.get(), d.data(), d.size(), buf, sizeof buf);
        if (!tk::verify(s, ec.public_key.get(), tk::SignMechanism::ecdsa_sha256, msg, {buf, n})) {
            throw std::runtime_error("sanity: raw ECDSA over SHA-256 does not verify as ECDSA-SHA256");
        }
        n = raw.sign(CKM_EDDSA, ed.private_key.get(), msg.data(), msg.size(), buf, sizeof buf);
        if (!tk::verify(s, ed.public_key.get(), tk::SignMechanism::eddsa, msg, {buf, n})) {
            throw std::runtime_error("sanity: raw Ed25519 does not verify");
        }
    }
    for (const char* name : {"bench-sign-hmac", "bench-sign-ecdsa"}) {
        auto r = ks.sign(name, msg);
        if (!ks.verify(name, msg, r.signature).valid)
            throw std::runtime_error(std::string("sanity: KeyService ") + name);
    }

    // Operations. Each layer op leases a session per call, as callers do.
    auto raw_op = [&](CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE key) {
        return [&raw, &msg, mech, key] {
            std::uint8_t buf[512];
            sink(buf, raw.sign(mech, key, msg.data(), msg.size(), buf, sizeof buf));
        };
    };
    auto layer_op = [&](tk::SignMechanism m, CK_OBJECT_HANDLE key) {
        return [&token, &msg, m, key] {
            auto lease = token->session();
            auto sig = tk::sign(lease.session(), key, m, msg);
            sink(sig.data(), sig.size());
        };
    };
    auto ks_op = [&](const char* name) {
        return [&ks, &msg, name] {
            auto r = ks.sign(name, msg);
            sink(r.signature.data(), r.signature.size());
        };
    };
    const CK_OBJECT_HANDLE ec_key = ec.private_key.get();

    struct Group {
        std::string alg;
        std::vector<Measure> ms;  // [0] is the raw baseline
    };
    std::vector<Group> groups;
    groups.push_back(
        {"HMAC-SHA256",
         {{"HMAC-SHA256  raw PKCS#11", raw_op(CKM_SHA256_HMAC, hmac.private_key.get())},
          {"HMAC-SHA256  token::sign (lease)", layer_op(tk::SignMechanism::hmac_sha256, hmac.private_key.get())},
          {"HMAC-SHA256  KeyService::sign", ks_op("bench-sign-hmac")},
          {"HMAC-SHA256  raw, token-object key", raw_op(CKM_SHA256_HMAC, hmac_tokobj)}}});
    groups.push_back({"ECDSA P-256",
                      {{"ECDSA P-256  raw (SHA-256 here + CKM_ECDSA)",
                        [&raw, &msg, ec_key] {
                            std::uint8_t buf[128];
                            auto d = sha256(msg);
                            sink(buf, raw.sign(CKM_ECDSA, ec_key, d.data(), d.size(), buf, sizeof buf));
                        }},
                       {"ECDSA P-256  token::sign (lease)", layer_op(tk::SignMechanism::ecdsa_sha256, ec_key)},
                       {"ECDSA P-256  KeyService::sign (DER)", ks_op("bench-sign-ecdsa")}}});
    groups.push_back(
        {"Ed25519",
         {{"Ed25519      raw PKCS#11", raw_op(CKM_EDDSA, ed.private_key.get())},
          {"Ed25519      token::sign (lease)", layer_op(tk::SignMechanism::eddsa, ed.private_key.get())}}});
    groups.push_back(
        {"RSA-2048 PKCS#1 v1.5 SHA-256",
         {{"RSA-2048     raw PKCS#11", raw_op(CKM_SHA256_RSA_PKCS, rsa.private_key.get())},
          {"RSA-2048     token::sign (lease)", layer_op(tk::SignMechanism::rsa_pkcs1_sha256, rsa.private_key.get())}}});

    print_header("Sign / HMAC throughput, one thread, " + std::to_string(kMessageBytes) + "-byte message", "vs raw");
    std::printf("  (KeyService audit: %s)\n", kAuditMode);
    json rows = json::array();
    for (auto& g : groups) {
        std::vector<Measure*> ptrs;
        for (auto& m : g.ms) ptrs.push_back(&m);
        measure_interleaved(ptrs, st);
        const double base = g.ms.front().ops_per_s();
        for (auto& m : g.ms) {
            const double ratio = m.ops_per_s() / base;
            print_row(m, fmt("%.3f", ratio));
            json j = m.to_json();
            j["alg"] = g.alg;
            j["ratio_to_raw"] = ratio;
            rows.push_back(j);
        }
    }
    must("C_DestroyObject", raw.fn()->C_DestroyObject(raw.h(), hmac_tokobj));
    write_json(st, json{{"phase", "sign"},
                        {"message_bytes", kMessageBytes},
                        {"seconds_per_variant", st.seconds},
                        {"rounds", st.rounds},
                        {"keyservice_audit", kAuditMode},
                        {"rows", rows}});
    return 0;
}

// ------------------------------------ phase 2a: KeyService lookup + sign

int phase_scale_keyservice(const Settings& st) {
    namespace core = kw::core;
    auto token = open_token();
    Service svc(*token, st.dir + "/scale.db");
    core::KeyService& ks = svc.ks;
    const std::vector<std::uint8_t> msg = message();
    const std::vector<std::string> names = numbered("bench-key-", st.sizes.back());
    std::mt19937_64 rng(0x6b657977);

    print_header("KeyService: lookup by name + HMAC-SHA256, random names, wrapped residency", "keys");
    std::printf("  (KeyService audit: %s)\n", kAuditMode);
    json sizes = json::array();
    std::size_t have = 0;
    double gen_seconds = 0;
    for (std::size_t n : st.sizes) {
        // Grow the store to n keys through KeyService::generate.
        const std::size_t added = n - have;
        auto t0 = SteadyClock::now();
        for (std::size_t i = have; i < n; ++i) {
            core::GenerateRequest r;
            r.name = names[i];
            r.type = core::KeyType::hmac;
            r.residency = core::Residency::wrapped;
            r.allow_token_fallback = false;
            (void)ks.generate(r);
            if ((i + 1) % 2000 == 0) progress("generated " + std::to_string(i + 1) + " keys");
        }
        const double gen_s = seconds_since(t0);
        gen_seconds += gen_s;
        // Warm-up: the first sign of each new key unwraps it and fills the
        // handle cache. Timed, as "first use".
        t0 = SteadyClock::now();
        for (std::size_t i = have; i < n; ++i) {
            auto r = ks.sign(names[i], msg);
            sink(r.signature.data(), r.signature.size());
        }
        const double cold_s = seconds_since(t0);
        have = n;

        const double gen_rate = static_cast<double>(added) / gen_s;
        const double cold_us = 1e6 * cold_s / static_cast<double>(added);
        std::printf("  %-46s %11.0f keys/s  (then first sign, unwrap + cache: %.1f us/key)\n",
                    ("KeyService::generate, keys " + std::to_string(n - added + 1) + "-" + std::to_string(n)).c_str(),
                    gen_rate, cold_us);
        std::fflush(stdout);

        std::uniform_int_distribution<std::size_t> pick(0, n - 1);
        Measure lookup{"store lookup only (KeyService::get)", [&] {
                           auto k = ks.get(names[pick(rng)]);
                           sink(reinterpret_cast<const std::uint8_t*>(k.name.data()), k.name.size());
                       }};
        Measure sign{"lookup + HMAC (KeyService::sign)", [&] {
                         auto r = ks.sign(names[pick(rng)], msg);
                         sink(r.signature.data(), r.signature.size());
                     }};
        measure_interleaved({&lookup, &sign}, st);
        print_row(lookup, std::to_string(n));
        print_row(sign, std::to_string(n));
        sizes.push_back(json{{"keys", n},
                             {"generate", {{"keys", added}, {"seconds", gen_s}, {"keys_per_s", gen_rate}}},
                             {"first_sign_us", cold_us},
                             {"cached_handles", ks.cached_handles()},
                             {"lookup_only", lookup.to_json()},
                             {"lookup_sign", sign.to_json()}});
    }
    const double ratio = sizes.back()["lookup_sign"]["us_per_op"].get<double>() /
                         sizes.front()["lookup_sign"]["us_per_op"].get<double>();
    const double ratio_p50 =
        sizes.back()["lookup_sign"]["p50_us"].get<double>() / sizes.front()["lookup_sign"]["p50_us"].get<double>();
    const double lookup_ratio = sizes.back()["lookup_only"]["us_per_op"].get<double>() /
                                sizes.front()["lookup_only"]["us_per_op"].get<double>();
    const double gen_rate = static_cast<double>(have) / gen_seconds;
    std::printf("  KeyService::generate overall: %zu keys in %.1f s = %.0f keys/s\n", have, gen_seconds, gen_rate);
    std::printf("  lookup+HMAC time per op, %zu keys / %zu keys: %.2fx (median latency: %.2fx; target: within 2x)\n",
                st.sizes.back(), st.sizes.front(), ratio, ratio_p50);
    std::printf("  store lookup alone, %zu keys / %zu keys: %.2fx\n", st.sizes.back(), st.sizes.front(), lookup_ratio);
    write_json(st, json{{"phase", "scale-keyservice"},
                        {"message_bytes", kMessageBytes},
                        {"keyservice_audit", kAuditMode},
                        {"seconds_per_variant", st.seconds},
                        {"rounds", st.rounds},
                        {"sizes", sizes},
                        {"generate_total", {{"keys", have}, {"seconds", gen_seconds}, {"keys_per_s", gen_rate}}},
                        {"ratio_largest_to_smallest", ratio},
                        {"p50_ratio_largest_to_smallest", ratio_p50},
                        {"lookup_only_ratio_largest_to_smallest", lookup_ratio}});
    return 0;
}

// ---------------------------- phase 2b: SoftHSM's own lookup (C_FindObjects)

int phase_scale_softhsm(const Settings& st) {
    auto token = open_token();
    const std::vector<std::uint8_t> msg = message();
    const std::vector<std::string> labels = numbered("bench-obj-", st.sizes.back());
    RawSession raw(*token);
    std::mt19937_64 rng(0x6b657977);

    print_header("SoftHSM: C_FindObjects by CKA_LABEL + HMAC-SHA256, random labels, token objects", "keys");
    json sizes = json::array();
    std::size_t have = 0;
    double create_seconds = 0;
    bool truncated = false;
    for (std::size_t requested : st.sizes) {
        const std::size_t start = have;
        auto t0 = SteadyClock::now();
        while (have < requested) {
            if (create_seconds + seconds_since(t0) > st.create_budget) {
                truncated = true;
                break;
            }
            (void)raw.generate_hmac_key(labels[have], true);
            ++have;
            if (have % 1000 == 0) progress("created " + std::to_string(have) + " token objects");
        }
        const double create_s = seconds_since(t0);
        create_seconds += create_s;
        const std::size_t n = have;
        if (n == 0) break;

        const double rate = n > start ? static_cast<double>(n - start) / create_s : 0;
        std::printf("  %-46s %11.0f keys/s%s\n",
                    ("C_GenerateKey token objects " + std::to_string(start + 1) + "-" + std::to_string(n)).c_str(),
                    rate, truncated ? "  (creation budget exhausted)" : "");
        std::fflush(stdout);

        std::uniform_int_distribution<std::size_t> pick(0, n - 1);
        Measure find{"C_FindObjects* only", [&] {
                         CK_OBJECT_HANDLE h = raw.find_by_label(labels[pick(rng)]);
                         sink(reinterpret_cast<const std::uint8_t*>(&h), 1);
                     }};
        Measure find_sign{"C_FindObjects* + C_SignInit/C_Sign", [&] {
                              CK_OBJECT_HANDLE h = raw.find_by_label(labels[pick(rng)]);
                              std::uint8_t buf[64];
                              sink(buf, raw.sign(CKM_SHA256_HMAC, h, msg.data(), msg.size(), buf, sizeof buf));
                          }};
        measure_interleaved({&find, &find_sign}, st);
        print_row(find, std::to_string(n));
        print_row(find_sign, std::to_string(n));
        sizes.push_back(json{{"keys", n},
                             {"requested_keys", requested},
                             {"create", {{"keys", n - start}, {"seconds", create_s}, {"keys_per_s", rate}}},
                             {"lookup_only", find.to_json()},
                             {"lookup_sign", find_sign.to_json()}});
        if (truncated) break;
    }
    double ratio = 0;
    if (!sizes.empty()) {
        ratio = sizes.back()["lookup_sign"]["us_per_op"].get<double>() /
                sizes.front()["lookup_sign"]["us_per_op"].get<double>();
        std::printf("  find+HMAC time per op, %zu keys / %zu keys: %.2fx\n", have,
                    sizes.front()["keys"].get<std::size_t>(), ratio);
    }
    if (truncated) {
        std::printf("  NOTE: stopped at %zu token objects: creation budget of %.0f s exhausted\n", have,
                    st.create_budget);
    }
    write_json(st, json{{"phase", "scale-softhsm"},
                        {"message_bytes", kMessageBytes},
                        {"seconds_per_variant", st.seconds},
                        {"rounds", st.rounds},
                        {"sizes", sizes},
                        {"create_total", {{"keys", have}, {"seconds", create_seconds}}},
                        {"truncated", truncated},
                        {"ratio_largest_to_smallest", ratio}});
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Settings st = parse_settings(argc, argv);
        if (st.phase == "sign") return phase_sign(st);
        if (st.phase == "scale-keyservice") return phase_scale_keyservice(st);
        if (st.phase == "scale-softhsm") return phase_scale_softhsm(st);
        std::fprintf(stderr, "token_bench: unknown phase '%s'\n", st.phase.c_str());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "token_bench: %s\n", e.what());
        return 1;
    }
}
