// keywarden audit-log benchmarks: durable appends through audit::Log (group
// commit) against one SQLite commit per event, the token HMAC every event
// costs, and hash-chain verification over a million events.
//
//   audit_bench hmac    --dir DIR [--json FILE]   raw SoftHSM HMAC ops/s, 1 and 2 threads
//   audit_bench append  --dir DIR [--json FILE]   group commit vs one commit per event
//   audit_bench verify  --dir DIR [--json FILE]   Verifier over 1,000,000 events
//   audit_bench verify-path --dir DIR [--json FILE]
//                       what one API-token verification costs in process, piece
//                       by piece (pepper HMAC, store, audit event), without HTTP:
//                       bench/server_bench.sh runs it next to keywardend
//
// Run it through bench/run.sh (or `./dev bench`), which creates a private
// SoftHSM token and runs each phase in its own process. The binary refuses to
// run without SOFTHSM2_CONF set, so it never touches the system token.
//
// Environment knobs:
//   KW_BENCH_SECONDS          measured time per variant (default 3 s here)
//   KW_BENCH_ROUNDS           rounds the variants alternate in (default 3)
//   KW_BENCH_AUDIT_THREADS    writer-thread counts for append (default 1,4,16)
//   KW_BENCH_VERIFY_EVENTS    events generated for verify (default 1000000)
//   KW_BENCH_ONLINE_EVENTS    events verified online, MACs checked in the
//                             token (default: all of them; fewer, and the
//                             full-log time is extrapolated and says so)
//
// A benchmark, not a test: the only failures are broken set-up or a chain
// that does not verify (the figures would then mean nothing).
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/audit/event.hpp"
#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sink.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/audit/verify.hpp"
#include "core/clock.hpp"
#include "core/encoding.hpp"
#include "core/key_service.hpp"
#include "core/root_keys.hpp"
#include "core/store/sqlite/database.hpp"
#include "core/store/sqlite/migrations.hpp"
#include "core/store/sqlite/wal_checkpointer.hpp"
#include "core/store/store.hpp"
#include "core/tokens/token_service.hpp"
#include "token/error.hpp"
#include "token/pin.hpp"
#include "token/pkcs11.hpp"
#include "token/sign.hpp"
#include "token/token.hpp"

namespace {

namespace audit = kw::core::audit;
using SteadyClock = std::chrono::steady_clock;
using json = nlohmann::json;

// ---------------------------------------------------------------- settings

struct Settings {
    std::string phase;
    std::string dir;
    std::string json_path;
    double seconds = 3.0;
    int rounds = 3;
    std::vector<int> threads{1, 4, 16};
    std::uint64_t verify_events = 1000000;
    std::uint64_t online_events = 0;  // 0: all
};

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return (v != nullptr && *v != '\0') ? std::string(v) : fallback;
}

std::vector<int> parse_ints(const std::string& text) {
    std::vector<int> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t comma = text.find(',', pos);
        if (comma == std::string::npos) comma = text.size();
        out.push_back(std::stoi(text.substr(pos, comma - pos)));
        pos = comma + 1;
    }
    if (out.empty() || *std::min_element(out.begin(), out.end()) < 1)
        throw std::invalid_argument("need positive counts");
    return out;
}

Settings parse_settings(int argc, char** argv) {
    Settings s;
    if (argc < 2)
        throw std::invalid_argument("usage: audit_bench hmac|append|verify|verify-path --dir DIR [--json FILE]");
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
    s.seconds = std::stod(env_or("KW_BENCH_SECONDS", "3"));
    s.rounds = std::max(1, std::stoi(env_or("KW_BENCH_ROUNDS", "3")));
    s.threads = parse_ints(env_or("KW_BENCH_AUDIT_THREADS", "1,4,16"));
    s.verify_events = std::stoull(env_or("KW_BENCH_VERIFY_EVENTS", "1000000"));
    s.online_events = std::stoull(env_or("KW_BENCH_ONLINE_EVENTS", "0"));
    if (s.verify_events < 1000) throw std::invalid_argument("KW_BENCH_VERIFY_EVENTS: at least 1000");
    if (s.online_events == 0 || s.online_events > s.verify_events) s.online_events = s.verify_events;
    return s;
}

// ------------------------------------------------------------- measurement

double seconds_since(SteadyClock::time_point t0) {
    return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

// CPU time of this process (user + system), seconds.
double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double pct_us(std::vector<std::int64_t>& ns, double p) {
    if (ns.empty()) return 0;
    auto k = static_cast<std::size_t>(p * static_cast<double>(ns.size() - 1));
    std::nth_element(ns.begin(), ns.begin() + static_cast<std::ptrdiff_t>(k), ns.end());
    return static_cast<double>(ns[k]) / 1000.0;
}

// One measured variant: rates of its rounds (median reported) and per-call
// latencies from every round.
struct Variant {
    std::string name;
    // Runs for about `secs`; returns operations done and appends call latencies.
    std::function<std::uint64_t(double secs, std::vector<std::int64_t>& lat_ns)> run;
    std::vector<double> round_rates;
    std::vector<std::int64_t> lat_ns;
    std::uint64_t ops = 0;
    double cpu_s = 0;  // process CPU time (all threads, SoftHSM included) during the timed rounds
    json extra = json::object();

    [[nodiscard]] double rate() const { return median(round_rates); }
    [[nodiscard]] double cpu_us_per_op() const { return ops > 0 ? 1e6 * cpu_s / static_cast<double>(ops) : 0; }
    [[nodiscard]] json to_json() {
        json j{{"name", name},
               {"ops_per_s", rate()},
               {"us_per_op", rate() > 0 ? 1e6 / rate() : 0},
               {"ops", ops},
               {"round_ops_per_s", round_rates},
               {"p50_us", pct_us(lat_ns, 0.5)},
               {"p99_us", pct_us(lat_ns, 0.99)},
               {"cpu_us_per_op", cpu_us_per_op()}};
        j.update(extra);
        return j;
    }
};

std::vector<Variant*> pointers_to(std::vector<Variant>& vs) {
    std::vector<Variant*> out;
    out.reserve(vs.size());
    for (auto& v : vs) out.push_back(&v);
    return out;
}

// Alternates the variants over the rounds so drift on a shared machine hits
// every variant alike; a short untimed warm-up first.
void run_interleaved(const std::vector<Variant*>& vs, const Settings& st) {
    for (Variant* v : vs) {
        std::vector<std::int64_t> scratch;
        (void)v->run(0.05, scratch);
    }
    const double per_round = st.seconds / st.rounds;
    for (int r = 0; r < st.rounds; ++r) {
        for (Variant* v : vs) {
            const double c0 = cpu_seconds();
            const auto t0 = SteadyClock::now();
            const std::uint64_t n = v->run(per_round, v->lat_ns);
            v->round_rates.push_back(static_cast<double>(n) / seconds_since(t0));
            v->cpu_s += cpu_seconds() - c0;
            v->ops += n;
        }
    }
}

// Runs `op` back to back in `threads` threads for `secs`; each thread makes
// its own state with `make` first (untimed). Returns calls completed.
template <typename Make>
std::uint64_t run_threads(int threads, double secs, std::vector<std::int64_t>& lat_ns, Make make) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::uint64_t> counts(static_cast<std::size_t>(threads), 0);
    std::vector<std::vector<std::int64_t>> lats(static_cast<std::size_t>(threads));
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
    std::vector<std::thread> ts;
    ts.reserve(static_cast<std::size_t>(threads));
    SteadyClock::time_point deadline;
    for (int t = 0; t < threads; ++t) {
        ts.emplace_back([&, t] {
            try {
                auto op = make(t);
                ++ready;
                while (!go.load()) std::this_thread::yield();
                auto prev = SteadyClock::now();
                auto& lat = lats[static_cast<std::size_t>(t)];
                std::uint64_t n = 0;
                while (prev < deadline) {
                    op();
                    const auto now = SteadyClock::now();
                    lat.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - prev).count());
                    prev = now;
                    ++n;
                }
                counts[static_cast<std::size_t>(t)] = n;
            } catch (...) {
                errors[static_cast<std::size_t>(t)] = std::current_exception();
                ++ready;
            }
        });
    }
    while (ready.load() < threads) std::this_thread::yield();
    deadline =
        SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(secs));
    go = true;
    for (auto& th : ts) th.join();
    for (auto& e : errors) {
        if (e) std::rethrow_exception(e);
    }
    std::uint64_t total = 0;
    for (std::size_t t = 0; t < counts.size(); ++t) {
        total += counts[t];
        lat_ns.insert(lat_ns.end(), lats[t].begin(), lats[t].end());
    }
    return total;
}

void print_header(const std::string& title, const char* last_col, const char* unit = "event") {
    std::printf("\n%s\n", title.c_str());
    std::printf("  %-52s %11s %9s %10s %10s %9s %9s\n", "variant", (std::string(unit) + "s/s").c_str(),
                ("us/" + std::string(unit)).c_str(), "p50 us", "p99 us",
                ("CPU us/" + std::string(unit).substr(0, 2)).c_str(), last_col);
    std::printf("  %s\n", std::string(116, '-').c_str());
}

void print_row(Variant& v, const std::string& last) {
    std::printf("  %-52s %11.0f %9.2f %10.1f %10.1f %9.1f %9s\n", v.name.c_str(), v.rate(),
                v.rate() > 0 ? 1e6 / v.rate() : 0.0, pct_us(v.lat_ns, 0.5), pct_us(v.lat_ns, 0.99), v.cpu_us_per_op(),
                last.c_str());
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

void write_json(const Settings& st, const json& j) {
    if (st.json_path.empty()) return;
    std::ofstream out(st.json_path);
    out << j.dump(2) << "\n";
    if (!out) throw std::runtime_error("cannot write " + st.json_path);
}

// ----------------------------------------------------- raw PKCS#11 baseline

void must(const char* function, CK_RV rv) {
    if (rv != CKR_OK) throw kw::token::Pkcs11Error(function, rv);
}

// A session of our own on the Token's module: C_SignInit + C_Sign with no
// pool, no lease, no vectors.
class RawSession {
public:
    explicit RawSession(const kw::token::Token& token) : fn_(token.module().fn()) {
        must("C_OpenSession",
             fn_->C_OpenSession(token.info().slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h_));
    }
    ~RawSession() { fn_->C_CloseSession(h_); }
    RawSession(const RawSession&) = delete;
    RawSession& operator=(const RawSession&) = delete;

    std::size_t hmac(CK_OBJECT_HANDLE key, const std::string& data, std::uint8_t* out, std::size_t cap) const {
        CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
        must("C_SignInit", fn_->C_SignInit(h_, &mech, key));
        CK_ULONG out_len = cap;
        must("C_Sign", fn_->C_Sign(h_, reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(data.data())), data.size(), out,
                                   &out_len));
        return out_len;
    }
    // A session-object copy of `key` (as audit::Keys makes of the audit MAC key).
    CK_OBJECT_HANDLE session_copy(CK_OBJECT_HANDLE key) const {
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE templ[] = {{CKA_TOKEN, &no, sizeof no}};
        CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
        must("C_CopyObject", fn_->C_CopyObject(h_, key, templ, 1, &copy));
        return copy;
    }

private:
    CK_FUNCTION_LIST* fn_;
    CK_SESSION_HANDLE h_ = CK_INVALID_HANDLE;
};

volatile std::uint8_t g_sink = 0;

// ------------------------------------------------------------------ set-up

std::unique_ptr<kw::token::Token> open_token(std::size_t sessions = 2) {
    if (std::getenv("SOFTHSM2_CONF") == nullptr) {
        throw std::runtime_error("SOFTHSM2_CONF is not set: run through bench/run.sh, which makes a private token");
    }
    kw::token::TokenConfig tc;
    tc.module_path = env_or("KEYWARDEN_HSM_MODULE", "");
    tc.selector.label = env_or("KEYWARDEN_TOKEN_LABEL", "keywarden");
    tc.sessions = sessions;
    const std::string locking = env_or("KEYWARDEN_HSM_LOCKING", "keywarden");
    tc.locking = kw::token::parse_module_locking(locking).value_or(kw::token::ModuleLocking::keywarden);
    auto token = std::make_unique<kw::token::Token>(tc);
    kw::token::PinSource ps;
    if (const char* f = std::getenv("KEYWARDEN_PIN_FILE")) ps.file = f;
    token->login(kw::token::read_pin(ps));
    (void)kw::core::init_root_keys(*token);  // idempotent: creates only what is missing
    return token;
}

// 64 hex characters: what the audit MAC covers (an event hash). (A static
// std::string can only fail at start-up, before any measurement.)
// NOLINTNEXTLINE(cert-err58-cpp)
const std::string kHashHex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
// A well-formed API token string: what the pepper HMAC covers on verify.
// NOLINTNEXTLINE(cert-err58-cpp)
const std::string kTokenText = "kw_live_3xYq8RkTn2VbWm5LpQzA7cDe9FgHjKs4u1W0aB";

// A realistic event: what keywardend records for one token verification.
audit::Record make_record(std::uint64_t i);

// "<label>, N thread(s)": N threads calling log->record() back to back.
Variant record_variant(const std::string& label, const std::shared_ptr<audit::Log>& log, int n, json extra) {
    Variant v{label + ", " + std::to_string(n) + (n == 1 ? " thread" : " threads"),
              [log, n](double secs, std::vector<std::int64_t>& lat) {
                  auto i = std::make_shared<std::atomic<std::uint64_t>>(0);
                  return run_threads(n, secs, lat, [log, i](int) {
                      return [log, i] { (void)log->record(make_record(i->fetch_add(1))); };
                  });
              }};
    v.extra = std::move(extra);
    return v;
}

audit::Record make_record(std::uint64_t i) {
    audit::Record r;
    r.type = audit::EventType::key_used;
    r.actor = "keywardend";
    r.key = "svc-" + std::to_string(i % 100);
    r.kid = "3xYq8RkTn2VbW";
    r.operation = "verify_token";
    r.outcome = "VALID";
    return r;
}

audit::Event make_event(std::uint64_t seq, kw::core::UnixTime time, const std::string& prev) {
    audit::Event e;
    const std::uint64_t k = seq % 7;
    e.type = k == 0 ? audit::EventType::key_created
                    : (k == 1 ? audit::EventType::verify_failed : audit::EventType::key_used);
    e.actor = k == 0 ? "cli:alice" : "keywardend";
    e.key = "svc-" + std::to_string(seq % 100);
    e.kid = "3xYq8RkTn2VbW";
    e.operation = k == 0 ? "generate" : (k == 6 ? "sign" : "verify_token");
    e.outcome = k == 1 ? "NOT_FOUND" : (k == 0 ? "ok" : "VALID");
    e.details = k == 6 ? R"({"bytes":256,"mechanism":"hmac_sha256"})" : "{}";
    e.seq = seq;
    e.time = time;
    e.prev_hash = prev;
    e.hash = audit::compute_hash(e);
    return e;
}

// Forwards to a sink, counting commits and the time spent in them.
class CountingSink final : public audit::Sink {
public:
    explicit CountingSink(audit::Sink& inner) : inner_(inner) {}
    std::optional<audit::Event> last_event() override { return inner_.last_event(); }
    std::optional<audit::Checkpoint> last_checkpoint() override { return inner_.last_checkpoint(); }
    void append(std::span<const audit::Event> events, const std::optional<audit::Checkpoint>& cp) override {
        const auto t0 = SteadyClock::now();
        inner_.append(events, cp);
        append_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - t0).count();
        ++commits;
        appended += events.size();
    }
    // What Log uses: the batch is built (hashes, token MACs, checkpoint
    // signature) inside the sink's write transaction, so the time counted
    // here is build + insert + commit.
    Batch append_at_head(const std::function<Batch(const std::optional<audit::Event>&,
                                                   const std::optional<audit::Checkpoint>&)>& build) override {
        const auto t0 = SteadyClock::now();
        Batch b = inner_.append_at_head(build);
        append_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - t0).count();
        ++commits;
        appended += b.events.size();
        return b;
    }
    void for_each(const std::function<bool(const audit::Event&)>& fn) override { inner_.for_each(fn); }
    std::vector<audit::Checkpoint> checkpoints() override { return inner_.checkpoints(); }
    std::vector<audit::Event> query(const audit::Query& q) override { return inner_.query(q); }
    std::uint64_t spool_ingested(const std::string& id) override { return inner_.spool_ingested(id); }
    void forget_spool(const std::string& id) override { inner_.forget_spool(id); }

    std::uint64_t commits = 0;  // written by the Log's writer thread only
    std::uint64_t appended = 0;
    std::int64_t append_ns = 0;

private:
    audit::Sink& inner_;
};

// ------------------------------------------------------ phase: raw HMAC rate

json hmac_rows(kw::token::Token& token, const kw::core::RootKeys& roots, const Settings& st, bool print) {
    // The session copy of the audit MAC key is made once and shared by every
    // thread's session (session objects are visible to all sessions).
    RawSession owner(token);
    const CK_OBJECT_HANDLE session_key = owner.session_copy(roots.audit_mac);
    const CK_OBJECT_HANDLE pepper = roots.peppers.rbegin()->second;
    auto variant = [&](std::string name, CK_OBJECT_HANDLE key, const std::string* data, int threads) {
        Variant v{std::move(name), [&token, key, data, threads](double secs, std::vector<std::int64_t>& lat) {
                      return run_threads(threads, secs, lat, [&token, key, data](int) {
                          auto s = std::make_shared<RawSession>(token);
                          return [s, key, data] {
                              std::uint8_t buf[64];
                              g_sink =
                                  static_cast<std::uint8_t>(g_sink ^ buf[s->hmac(key, *data, buf, sizeof buf) - 1]);
                          };
                      });
                  }};
        v.extra = {{"threads", threads}};
        return v;
    };
    std::vector<Variant> vs;
    vs.push_back(variant("HMAC session key (audit MAC copy), 64 B, 1 thread", session_key, &kHashHex, 1));
    vs.push_back(variant("HMAC session key (audit MAC copy), 64 B, 2 threads", session_key, &kHashHex, 2));
    vs.push_back(variant("HMAC token object (pepper), 46 B token, 1 thread", pepper, &kTokenText, 1));
    vs.push_back(variant("HMAC token object (pepper), 46 B token, 2 threads", pepper, &kTokenText, 2));
    const std::vector<Variant*> ptrs = pointers_to(vs);
    run_interleaved(ptrs, st);
    if (print) {
        const std::string title = "Raw SoftHSM HMAC-SHA256 (C_SignInit + C_Sign, own sessions; module locking " +
                                  std::string(kw::token::to_string(token.locking())) + ")";
        print_header(title, "threads", "op");
    }
    json rows = json::array();
    for (auto& v : vs) {
        if (print) print_row(v, std::to_string(v.extra["threads"].get<int>()));
        rows.push_back(v.to_json());
    }
    return rows;
}

int phase_hmac(const Settings& st) {
    auto token = open_token();
    const auto roots = kw::core::load_root_keys(*token);
    json rows = hmac_rows(*token, roots, st, true);
    double best_session = 0, best_token = 0;
    for (const auto& r : rows) {
        double& b = r["name"].get<std::string>().find("session") != std::string::npos ? best_session : best_token;
        b = std::max(b, r["ops_per_s"].get<double>());
    }
    std::printf("  best: session key %.0f ops/s, token-object key (pepper) %.0f ops/s\n", best_session, best_token);
    write_json(st, json{{"phase", "hmac"},
                        {"module_locking", kw::token::to_string(token->locking())},
                        {"seconds_per_variant", st.seconds},
                        {"rounds", st.rounds},
                        {"rows", rows},
                        {"best_session_key_ops_per_s", best_session},
                        {"best_token_object_ops_per_s", best_token}});
    return 0;
}

// ------------------------------------------------- phase: durable appends

int phase_append(const Settings& st) {
    auto token = open_token();
    const auto roots = kw::core::load_root_keys(*token);
    audit::Keys keys(*token, roots);
    kw::core::SystemClock clock;

    // 1. What one event costs the writer thread, piece by piece (one thread).
    json cost;
    {
        std::vector<Variant> vs;
        vs.push_back(
            {"event hash (canonical form + SHA-256, in process)", [](double secs, std::vector<std::int64_t>& lat) {
                 return run_threads(1, secs, lat, [](int) {
                     return [e = make_event(1, 1700000000, kHashHex)]() mutable {
                         ++e.seq;
                         e.hash = audit::compute_hash(e);
                     };
                 });
             }});
        // Keys::macs over a batch of 256 hashes: what the writer does per
        // batch; timed per batch, reported per event.
        const std::vector<std::string> batch(256, kHashHex);
        vs.push_back({"event MAC in the token (Keys::macs, batch of 256)",
                      [&keys, &batch](double secs, std::vector<std::int64_t>& lat) {
                          return 256 * run_threads(1, secs, lat, [&keys, &batch](int) {
                                     return [&keys, &batch] {
                                         g_sink = static_cast<std::uint8_t>(keys.macs(batch).size());
                                     };
                                 });
                      }});
        vs.push_back(
            {"pseudonym HMAC in the token (Keys::pseudonym)", [&keys](double secs, std::vector<std::int64_t>& lat) {
                 return run_threads(1, secs, lat, [&keys](int) {
                     return [&keys] { g_sink = static_cast<std::uint8_t>(keys.pseudonym(kHashHex).size()); };
                 });
             }});
        // SQLite insert of a full event row inside one big transaction
        // (1,000 per commit): the storage cost per event without the commit.
        auto sink = std::make_shared<audit::SqliteSink>(st.dir + "/audit-insert.db", audit::Durability::process);
        auto next = std::make_shared<std::uint64_t>(0);
        vs.push_back({"SQLite insert, 1,000 events per commit (process)",
                      [sink, next](double secs, std::vector<std::int64_t>& lat) {
                          return 1000 * run_threads(1, secs, lat, [sink, next](int) {
                                     return [sink, next] {
                                         std::vector<audit::Event> evs;
                                         evs.reserve(1000);
                                         for (int i = 0; i < 1000; ++i) {
                                             audit::Event e = make_event(++*next, 1700000000, kHashHex);
                                             e.mac = kHashHex;
                                             evs.push_back(std::move(e));
                                         }
                                         sink->append(evs, std::nullopt);
                                     };
                                 });
                      }});
        const std::vector<Variant*> ptrs = pointers_to(vs);
        run_interleaved(ptrs, st);
        print_header("Audit: cost per event of the writer thread's steps (one thread)", "");
        json rows = json::array();
        for (auto& v : vs) {
            print_row(v, "");
            rows.push_back(v.to_json());
        }
        std::printf("  (p50/p99 of the batch rows are per call: 256 MACs, 1,000 inserts)\n");
        const double hash_us = 1e6 / vs[0].rate(), mac_us = 1e6 / vs[1].rate(), insert_us = 1e6 / vs[3].rate();
        // The last variant's rate includes building the events (hashing): take the hash out.
        const double insert_only_us = std::max(0.0, insert_us - hash_us);
        const double ceiling = 1e6 / (hash_us + mac_us + insert_only_us);
        std::printf("  (the insert row includes hashing the events it inserts; insert alone ~ %.2f us/event)\n",
                    insert_only_us);
        std::printf(
            "  one writer thread, hash + MAC + insert per event: ceiling ~ %.0f events/s "
            "(MAC = %.0f%% of it), before commit costs\n",
            ceiling, 100 * mac_us / (hash_us + mac_us + insert_only_us));
        cost = {{"rows", rows},
                {"hash_us", hash_us},
                {"mac_us", mac_us},
                {"pseudonym_us", 1e6 / vs[2].rate()},
                {"insert_us", insert_only_us},
                {"writer_ceiling_events_per_s", ceiling}};
    }
    std::fflush(stdout);

    // 2. Durable appends: one commit per event vs Log::record (group commit).
    json by_durability = json::array();
    for (auto durability : {audit::Durability::process, audit::Durability::power}) {
        const bool power = durability == audit::Durability::power;
        const std::string dname = power ? "power" : "process";
        const std::string sync = power ? "FULL" : "NORMAL";

        // Baseline: BEGIN IMMEDIATE; INSERT; COMMIT per event, same schema and
        // pragmas as SqliteSink, rows pre-computed (no hash, no MAC here).
        auto db = std::make_shared<kw::core::sqlite::Database>(st.dir + "/audit-baseline-" + dname + ".db", 5000);
        db->exec("PRAGMA journal_mode=WAL");
        db->exec(power ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        kw::core::sqlite::migrate(*db);
        auto insert = std::make_shared<kw::core::sqlite::Statement>(
            *db,
            "INSERT INTO audit_events(seq, time, type, actor, key, kid, op, outcome, details, prev_hash, hash, mac) "
            "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)");
        auto base_seq = std::make_shared<std::uint64_t>(0);
        audit::Event proto = make_event(1, 1700000000, kHashHex);
        proto.mac = kHashHex;

        std::vector<Variant> vs;
        vs.push_back({"baseline: BEGIN; INSERT; COMMIT per event",
                      [db, insert, base_seq, proto](double secs, std::vector<std::int64_t>& lat) {
                          return run_threads(1, secs, lat, [db, insert, base_seq, proto](int) {
                              return [db, insert, base_seq, e = proto] {
                                  kw::core::sqlite::Transaction tx(*db);
                                  auto& s = *insert;
                                  s.reset();
                                  s.bind(1, static_cast<std::int64_t>(++*base_seq))
                                      .bind(2, e.time)
                                      .bind(3, audit::to_string(e.type))
                                      .bind(4, e.actor)
                                      .bind(5, e.key)
                                      .bind(6, e.kid)
                                      .bind(7, e.operation)
                                      .bind(8, e.outcome)
                                      .bind(9, e.details)
                                      .bind(10, e.prev_hash)
                                      .bind(11, e.hash)
                                      .bind(12, e.mac);
                                  s.run();
                                  tx.commit();
                              };
                          });
                      }});
        // Group commit: one Log on one SqliteSink for all rounds (it resumes
        // the chain), N threads calling record() back to back.
        auto sqlite_sink = std::make_shared<audit::SqliteSink>(st.dir + "/audit-log-" + dname + ".db", durability);
        auto counting = std::make_shared<CountingSink>(*sqlite_sink);
        auto log = std::make_shared<audit::Log>(*counting, keys, clock, audit::LogOptions{});
        for (int n : st.threads) vs.push_back(record_variant("Log::record", log, n, {{"threads", n}}));
        // keywardend's path with durability process: record() returns once
        // the event is in the spool file (one write()); a thread stores the
        // spooled events in batches, one seal per batch (core/audit/spool.hpp).
        // 10 ms batches here, as when the figures in docs/performance.md were
        // taken; keywardend's default is now 2 ms.
        const std::size_t first_spooled = vs.size();
        std::shared_ptr<audit::SqliteSink> spool_sqlite;
        std::shared_ptr<CountingSink> spool_counting;
        std::shared_ptr<audit::Log> spool_log;
        if (!power) {
            const std::string spool_db = st.dir + "/audit-spooled.db";
            spool_sqlite = std::make_shared<audit::SqliteSink>(spool_db, durability);
            spool_counting = std::make_shared<CountingSink>(*spool_sqlite);
            audit::LogOptions so;
            so.spool_store_path = spool_db;
            so.spool = true;
            so.ingest_interval = std::chrono::milliseconds(10);
            spool_log = std::make_shared<audit::Log>(*spool_counting, keys, clock, so);
            for (int n : st.threads) {
                vs.push_back(record_variant("Log::record spooled", spool_log, n, {{"threads", n}, {"spooled", true}}));
            }
        }
        // Batch sizes per variant: commits counted around each variant's runs.
        const std::vector<Variant*> ptrs = pointers_to(vs);
        std::vector<std::uint64_t> commits(vs.size(), 0), events(vs.size(), 0);
        std::vector<std::int64_t> commit_ns(vs.size(), 0);
        for (std::size_t i = 1; i < vs.size(); ++i) {
            auto inner = vs[i].run;
            auto counting_i = i >= first_spooled ? spool_counting : counting;
            vs[i].run = [inner, counting = counting_i, &commits, &events, &commit_ns, i](
                            double secs, std::vector<std::int64_t>& lat) {
                const std::uint64_t c0 = counting->commits, e0 = counting->appended;
                const std::int64_t n0 = counting->append_ns;
                const std::uint64_t n = inner(secs, lat);
                commits[i] += counting->commits - c0;
                events[i] += counting->appended - e0;
                commit_ns[i] += counting->append_ns - n0;
                return n;
            };
        }
        run_interleaved(ptrs, st);
        std::string title = "Audit: durable appends, durability ";
        title += dname;
        title += " (WAL, synchronous=";
        title += sync;
        title += ")";
        print_header(title, "vs base");
        const double base = vs[0].rate();
        json rows = json::array();
        for (std::size_t i = 0; i < vs.size(); ++i) {
            if (i > 0) {
                const double batch = commits[i] ? static_cast<double>(events[i]) / static_cast<double>(commits[i]) : 0;
                const double append_us =
                    commits[i] ? 1e-3 * static_cast<double>(commit_ns[i]) / static_cast<double>(commits[i]) : 0;
                vs[i].extra["mean_batch"] = batch;
                vs[i].extra["commits"] = commits[i];
                vs[i].extra["sink_append_us_per_commit"] = append_us;
            }
            vs[i].extra["ratio_to_baseline"] = vs[i].rate() / base;
            print_row(vs[i], fmt("%.2fx", vs[i].rate() / base));
            rows.push_back(vs[i].to_json());
        }
        for (std::size_t i = 1; i < vs.size(); ++i) {
            std::printf("    %-50s mean batch %.1f events, %.0f us per batch in the sink's write transaction\n",
                        vs[i].name.c_str(), vs[i].extra["mean_batch"].get<double>(),
                        vs[i].extra["sink_append_us_per_commit"].get<double>());
        }
        // The chain the Log wrote must verify (else the rates mean nothing).
        for (auto& v : vs) v.run = nullptr;  // they hold the Log too
        log.reset();                         // drains and stops the writer
        spool_log.reset();                   // stores what is still spooled
        for (const auto& written : {sqlite_sink, spool_sqlite}) {
            if (!written) continue;
            audit::VerifyOptions vo;
            vo.public_key = keys.public_key();
            vo.check_mac = [&keys](const std::string& h, const std::string& m) { return keys.check_mac(h, m); };
            audit::Verifier ver(written->checkpoints(), vo);
            written->for_each([&](const audit::Event& e) { return ver.feed(e); });
            const auto rep = ver.finish();
            if (!rep.ok) throw std::runtime_error("the chain written by Log does not verify: " + rep.message);
            std::printf(
                "  chain written by Log%s verified (seals checked in the token): %llu events, %llu checkpoints\n",
                written == spool_sqlite ? " (spooled)" : "", static_cast<unsigned long long>(rep.events),
                static_cast<unsigned long long>(rep.checkpoints));
        }
        double best = 0;
        for (std::size_t i = 1; i < vs.size(); ++i) best = std::max(best, vs[i].rate());
        by_durability.push_back({{"durability", dname},
                                 {"synchronous", sync},
                                 {"rows", rows},
                                 {"baseline_events_per_s", base},
                                 {"best_group_commit_events_per_s", best},
                                 {"best_ratio_to_baseline", best / base},
                                 {"target_100k_met", best >= 100000}});
    }

    // 3. The raw HMAC ceiling, measured in the same process and run.
    json hmac = hmac_rows(*token, roots, st, true);

    std::printf("\n  target >= 100,000 durable events/s with group commit:\n");
    for (const auto& d : by_durability) {
        std::printf(
            "    durability %-8s best %8.0f events/s (%.1fx the one-commit-per-event baseline of %.0f/s) -> %s\n",
            d["durability"].get<std::string>().c_str(), d["best_group_commit_events_per_s"].get<double>(),
            d["best_ratio_to_baseline"].get<double>(), d["baseline_events_per_s"].get<double>(),
            d["target_100k_met"].get<bool>() ? "MET" : "MISSED");
    }
    write_json(st, json{{"phase", "append"},
                        {"seconds_per_variant", st.seconds},
                        {"rounds", st.rounds},
                        {"threads", st.threads},
                        {"cost_per_event", cost},
                        {"durability", by_durability},
                        {"raw_hmac", hmac}});
    return 0;
}

// ------------------------------------------------------ phase: verification

int phase_verify(const Settings& st) {
    auto token = open_token();
    const auto roots = kw::core::load_root_keys(*token);
    audit::Keys keys(*token, roots);
    const std::string path = st.dir + "/audit-verify.db";
    audit::SqliteSink sink(path, audit::Durability::process);
    const std::uint64_t n = st.verify_events;
    constexpr std::uint64_t kBatch = 1000;  // = checkpoint_every: one checkpoint per commit, as Log writes them

    // 1. Generate: the Log writer's work done in bulk, one thread: hash,
    // MAC in the token (Keys::macs, 1,000 per call), a signed checkpoint and
    // one commit per 1,000 events.
    std::printf("\nAudit: chain verification over %llu events (checkpoint every %llu)\n",
                static_cast<unsigned long long>(n), static_cast<unsigned long long>(kBatch));
    std::fflush(stdout);
    const kw::core::UnixTime t = 1700000000;
    std::string prev;
    double mac_s = 0;
    auto t0 = SteadyClock::now();
    for (std::uint64_t seq = 1; seq <= n;) {
        std::vector<audit::Event> evs;
        std::vector<std::string> hashes;
        const std::uint64_t end = std::min(n, seq + kBatch - 1);
        evs.reserve(end - seq + 1);
        for (; seq <= end; ++seq) {
            evs.push_back(make_event(seq, t + static_cast<kw::core::UnixTime>(seq / 1000), prev));
            prev = evs.back().hash;
            hashes.push_back(prev);
        }
        const auto m0 = SteadyClock::now();
        auto macs = keys.macs(hashes);
        mac_s += seconds_since(m0);
        for (std::size_t i = 0; i < evs.size(); ++i) evs[i].mac = std::move(macs[i]);
        audit::Checkpoint cp{end, prev, evs.back().time, ""};
        cp.signature = keys.sign_checkpoint(cp);
        sink.append(evs, cp);
        if (end % 100000 == 0) progress("generated " + std::to_string(end) + " events");
    }
    const double gen_s = seconds_since(t0);
    std::printf(
        "  generate (hash + token MAC + checkpoint + commit per 1,000): %.1f s = %.0f events/s "
        "(token MACs alone %.1f s = %.0f/s)\n",
        gen_s, static_cast<double>(n) / gen_s, mac_s, static_cast<double>(n) / mac_s);
    std::fflush(stdout);

    auto checkpoints = sink.checkpoints();
    // 2. Reading alone (SQLite scan + Event construction): the floor under
    // every verification that reads from the store. Every pass below is one
    // thread, so its CPU time is what it would take on an idle core.
    double c0 = cpu_seconds();
    t0 = SteadyClock::now();
    std::uint64_t read = 0;
    sink.for_each([&](const audit::Event& e) {
        read += e.seq != 0;
        return true;
    });
    const double read_s = seconds_since(t0);
    const double read_cpu = cpu_seconds() - c0;

    // 3. Offline: hash chain + checkpoint signatures (public key only).
    audit::VerifyOptions off;
    off.public_key = keys.public_key();
    off.find_hash = [&](const std::string& h) { return sink.seq_of_hash(h); };
    c0 = cpu_seconds();
    t0 = SteadyClock::now();
    audit::Verifier v_off(checkpoints, off);
    sink.for_each([&](const audit::Event& e) { return v_off.feed(e); });
    const auto rep_off = v_off.finish();
    const double off_s = seconds_since(t0);
    const double off_cpu = cpu_seconds() - c0;
    if (!rep_off.ok || rep_off.events != n) throw std::runtime_error("offline verification failed: " + rep_off.message);

    // 4. Offline from memory (first 100,000 events preloaded): the Verifier's
    // own CPU cost without the store read.
    const std::uint64_t mem_n = std::min<std::uint64_t>(n, 100000);
    std::vector<audit::Event> mem;
    mem.reserve(mem_n);
    sink.for_each([&](const audit::Event& e) {
        mem.push_back(e);
        return mem.size() < mem_n;
    });
    std::vector<audit::Checkpoint> mem_cps;
    for (const auto& c : checkpoints) {
        if (c.seq <= mem_n) mem_cps.push_back(c);
    }
    c0 = cpu_seconds();
    t0 = SteadyClock::now();
    audit::Verifier v_mem(mem_cps, off);
    for (auto& e : mem) v_mem.feed(std::move(e));
    const auto rep_mem = v_mem.finish();
    const double mem_s = seconds_since(t0);
    const double mem_cpu = cpu_seconds() - c0;
    if (!rep_mem.ok || rep_mem.events != mem_n)
        throw std::runtime_error("in-memory verification failed: " + rep_mem.message);
    mem.clear();
    mem.shrink_to_fit();

    // 5. Online: every MAC checked in the token (Keys::check_mac), on the
    // first online_events events; the full-log time is extrapolated.
    const std::uint64_t on_n = st.online_events;
    audit::VerifyOptions on = off;
    on.check_mac = [&](const std::string& h, const std::string& m) { return keys.check_mac(h, m); };
    std::vector<audit::Checkpoint> on_cps;
    for (const auto& c : checkpoints) {
        if (c.seq <= on_n) on_cps.push_back(c);
    }
    std::uint64_t fed = 0;
    c0 = cpu_seconds();
    t0 = SteadyClock::now();
    audit::Verifier v_on(on_cps, on);
    sink.for_each([&](const audit::Event& e) { return v_on.feed(e) && ++fed < on_n; });
    const auto rep_on = v_on.finish();
    const double on_s = seconds_since(t0);
    const double on_cpu = cpu_seconds() - c0;  // SoftHSM runs in this process too
    if (!rep_on.ok || rep_on.events != on_n || !rep_on.macs_checked) {
        throw std::runtime_error("online verification failed: " + rep_on.message);
    }

    const double read_rate = static_cast<double>(n) / read_s;
    const double off_rate = static_cast<double>(n) / off_s;
    const double mem_rate = static_cast<double>(mem_n) / mem_s;
    const double on_rate = static_cast<double>(on_n) / on_s;
    const bool extrapolated = on_n < n;
    std::printf("  %-56s %10s %8s %8s %12s %8s\n", "variant", "events/s", "wall s", "CPU s", "events/CPU-s", "vs read");
    std::printf("  %s\n", std::string(108, '-').c_str());
    auto row = [&](const std::string& name, std::uint64_t events, double rate, double secs, double cpu) {
        std::printf("  %-56s %10.0f %8.2f %8.2f %12.0f %7.2fx\n", name.c_str(), rate, secs, cpu,
                    static_cast<double>(events) / cpu, rate / read_rate);
    };
    row("read only (SQLite scan, no checks), " + std::to_string(n), n, read_rate, read_s, read_cpu);
    row("offline verify (chain + checkpoints), " + std::to_string(n), n, off_rate, off_s, off_cpu);
    row("offline verify from memory, " + std::to_string(mem_n), mem_n, mem_rate, mem_s, mem_cpu);
    row("online verify (+ MAC per event in the token), " + std::to_string(on_n), on_n, on_rate, on_s, on_cpu);
    std::printf("  (events/CPU-s: one thread's events per second of its CPU time, i.e. the rate on an idle core)\n");
    if (extrapolated) {
        std::printf("  online verify of all %llu events: ~%.0f s, extrapolated from the %llu-event run\n",
                    static_cast<unsigned long long>(n), static_cast<double>(n) / on_rate,
                    static_cast<unsigned long long>(on_n));
    }
    std::printf(
        "  target >= 500,000 events/s verification: offline %s (%.0f/s; %.0f per CPU-second), online %s (%.0f/s)\n",
        off_rate >= 500000 ? "MET" : "MISSED", off_rate, static_cast<double>(n) / off_cpu,
        on_rate >= 500000 ? "MET" : "MISSED", on_rate);
    write_json(
        st, json{{"phase", "verify"},
                 {"events", n},
                 {"checkpoint_every", kBatch},
                 {"checkpoints", rep_off.checkpoints},
                 {"generate",
                  {{"seconds", gen_s},
                   {"events_per_s", static_cast<double>(n) / gen_s},
                   {"mac_seconds", mac_s},
                   {"mac_per_s", static_cast<double>(n) / mac_s}}},
                 {"read_only",
                  {{"events", n}, {"seconds", read_s}, {"cpu_seconds", read_cpu}, {"events_per_s", read_rate}}},
                 {"offline", {{"events", n}, {"seconds", off_s}, {"cpu_seconds", off_cpu}, {"events_per_s", off_rate}}},
                 {"offline_memory",
                  {{"events", mem_n}, {"seconds", mem_s}, {"cpu_seconds", mem_cpu}, {"events_per_s", mem_rate}}},
                 {"online",
                  {{"events", on_n},
                   {"seconds", on_s},
                   {"cpu_seconds", on_cpu},
                   {"events_per_s", on_rate},
                   {"extrapolated", extrapolated},
                   {"full_log_seconds_estimate", static_cast<double>(n) / on_rate}}},
                 {"target_500k_offline_met", off_rate >= 500000},
                 {"target_500k_online_met", on_rate >= 500000}});
    return 0;
}

// ------------------------------------- phase: one token verification, in process

// Keeps nothing: events are still hashed and MACed in the token by the Log.
class DiscardSink final : public audit::Sink {
public:
    std::optional<audit::Event> last_event() override { return std::nullopt; }
    std::optional<audit::Checkpoint> last_checkpoint() override { return std::nullopt; }
    void append(std::span<const audit::Event>, const std::optional<audit::Checkpoint>&) override {}
    Batch append_at_head(const std::function<Batch(const std::optional<audit::Event>&,
                                                   const std::optional<audit::Checkpoint>&)>& build) override {
        return build(std::nullopt, std::nullopt);  // hashed and MACed, then dropped
    }
    void for_each(const std::function<bool(const audit::Event&)>&) override {}
    std::vector<audit::Checkpoint> checkpoints() override { return {}; }
    std::vector<audit::Event> query(const audit::Query&) override { return {}; }
};

// KeyService + TokenService over a shared store, with an audit Log of its own
// and, as in keywardend, use counts of unlimited tokens flushed every second.
struct VerifyStack {
    VerifyStack(kw::token::Token& token, kw::core::Store& store, const kw::core::RootKeys& roots, audit::Sink& sink)
        : keys(token, roots),
          log(sink, keys, clock),
          ks(token, store, roots, clock, log, "bench"),
          usage(store, std::chrono::seconds(1)),
          tokens(ks, &usage) {}
    kw::core::SystemClock clock;
    audit::Keys keys;
    audit::Log log;
    kw::core::KeyService ks;
    kw::core::tokens::UsageAccumulator usage;
    kw::core::tokens::TokenService tokens;
};

int phase_verify_path(const Settings& st) {
    auto token = open_token(4);  // keywardend's 4 HTTP workers share the pool the same way
    const auto roots = kw::core::load_root_keys(*token);
    const std::string path = st.dir + "/verify-path.db";
    // As keywardend: the audit log in the store file, on its own connection,
    // WAL checkpoints in the background (never inside a commit).
    auto store = kw::core::open_store("sqlite:" + path, kw::core::StoreOptions{2000, false});
    audit::SqliteSink same_file(path, audit::Durability::process, 5000, false);
    kw::core::sqlite::WalCheckpointer checkpointer(path, std::chrono::milliseconds(200));
    audit::SqliteSink other_file(st.dir + "/verify-path-audit.db", audit::Durability::process);
    DiscardSink discard;
    VerifyStack a(*token, *store, roots, same_file);
    VerifyStack b(*token, *store, roots, other_file);
    VerifyStack c(*token, *store, roots, discard);

    kw::core::tokens::IssueRequest ir;
    ir.name = "bench-svc";
    ir.scopes = {"read_write"};
    auto issued = a.tokens.issue(ir);
    const std::string text(issued.token.view());
    const CK_OBJECT_HANDLE pepper = roots.peppers.rbegin()->second;
    std::vector<std::uint8_t> digest;
    {
        auto lease = token->session();
        digest =
            kw::token::sign(lease.session(), pepper, kw::token::SignMechanism::hmac_sha256, kw::core::as_bytes(text));
    }
    const auto match = store->find_token(digest);
    if (!match) throw std::runtime_error("the issued token is not found by its digest");
    const std::string kid = match->token.kid;
    for (auto* stack : {&a, &b, &c}) {
        const auto v = stack->tokens.verify(text);
        if (v.code != kw::core::tokens::VerifyCode::VALID)
            throw std::runtime_error("sanity: the issued token does not verify");
    }

    auto verify_op = [&text](VerifyStack& s) {
        return [&s, &text](int) {
            return [&s, &text] {
                if (s.tokens.verify(text).code != kw::core::tokens::VerifyCode::VALID)
                    throw std::runtime_error("not VALID");
            };
        };
    };
    auto variant = [](std::string name, int threads, auto make) {
        Variant v{std::move(name), [threads, make](double secs, std::vector<std::int64_t>& lat) {
                      return run_threads(threads, secs, lat, make);
                  }};
        v.extra = {{"threads", threads}};
        return v;
    };
    std::vector<Variant> vs;
    vs.push_back(variant("pepper HMAC (token object, session lease)", 1, [&token, pepper, &text](int) {
        return [&token, pepper, &text] {
            auto lease = token->session();
            g_sink = kw::token::sign(lease.session(), pepper, kw::token::SignMechanism::hmac_sha256,
                                     kw::core::as_bytes(text))[0];
        };
    }));
    vs.push_back(variant("store: find_token + consume_token_use", 1, [&store, &digest, &kid](int) {
        return [&store, &digest, &kid] {
            auto m = store->find_token(digest);
            if (!m || !store->consume_token_use(kid, 1700000000)) throw std::runtime_error("store: token not usable");
        };
    }));
    vs.push_back(variant("store: find_token (use counted in memory)", 1, [&store, &digest](int) {
        return [&store, &digest] {
            if (!store->find_token(digest)) throw std::runtime_error("store: token not found");
        };
    }));
    vs.push_back(variant("audit event: Log::record (store file)", 1,
                         [&a](int) { return [&a] { (void)a.log.record(make_record(1)); }; }));
    vs.push_back(variant("TokenService::verify, audit in the store file", 1, verify_op(a)));
    vs.push_back(variant("TokenService::verify, audit in the store file", 4, verify_op(a)));
    vs.push_back(variant("TokenService::verify, audit in another file", 4, verify_op(b)));
    vs.push_back(variant("TokenService::verify, audit discarded (MAC only)", 4, verify_op(c)));
    const std::vector<Variant*> ptrs = pointers_to(vs);
    run_interleaved(ptrs, st);
    print_header("One API-token verification in process (no HTTP): the pieces and the whole", "threads", "op");
    json rows = json::array();
    for (auto& v : vs) {
        print_row(v, std::to_string(v.extra["threads"].get<int>()));
        rows.push_back(v.to_json());
    }
    // The token is unlimited: its verification reads the store (find_token)
    // and counts the use in memory.
    const double sum_us = 1e6 / vs[0].rate() + 1e6 / vs[2].rate() + 1e6 / vs[3].rate();
    std::printf(
        "  pieces, one thread: pepper HMAC %.1f + find_token %.1f + audit event %.1f = %.1f us; whole verify %.1f "
        "us\n",
        1e6 / vs[0].rate(), 1e6 / vs[2].rate(), 1e6 / vs[3].rate(), sum_us, 1e6 / vs[4].rate());
    write_json(st, json{{"phase", "verify-path"},
                        {"seconds_per_variant", st.seconds},
                        {"rounds", st.rounds},
                        {"rows", rows},
                        {"pieces_sum_us", sum_us}});
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Settings st = parse_settings(argc, argv);
        if (st.phase == "hmac") return phase_hmac(st);
        if (st.phase == "append") return phase_append(st);
        if (st.phase == "verify") return phase_verify(st);
        if (st.phase == "verify-path") return phase_verify_path(st);
        std::fprintf(stderr, "audit_bench: unknown phase '%s'\n", st.phase.c_str());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "audit_bench: %s\n", e.what());
        return 1;
    }
}
