// A helper for tests/audit_crash_test.sh (not a doctest): appends audit
// events forever from N threads and prints "durable <seq>" for each event once
// Log::record() has returned, i.e. once its batch is committed. The crash test
// kills it with SIGKILL at a random moment and checks that every seq printed
// here is in the store and that the chain still verifies.
//
//   audit_appender [THREADS=4] [PAUSE_US=0] [spool RUN]
//
// With "spool", the log spools (LogOptions::spool): record() returns once the
// event is in the spool file, and the appender prints "spooled RUN THREAD I"
// instead (the seq is given later, when the event reaches the store). The
// crash test then checks that the next opener of the log stores each such
// event exactly once.
//
// PAUSE_US: each thread sleeps this long between its events. The crash test
// uses it to bound how many events a round writes, because `hsm-keytool
// audit verify` after every round checks every MAC in the token and the log
// only grows.
//
// Environment (from tests/with-token.sh): KEYWARDEN_HSM_MODULE,
// KEYWARDEN_TOKEN_LABEL, KEYWARDEN_PIN, KEYWARDEN_STORE_URL (sqlite:PATH).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/clock.hpp"
#include "core/root_keys.hpp"
#include "token/token.hpp"

namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        std::fprintf(stderr, "audit_appender: %s is not set (run under tests/with-token.sh)\n", name);
        std::exit(2);
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    namespace audit = kw::core::audit;
    try {
        const int threads = argc > 1 ? std::atoi(argv[1]) : 4;
        const long pause_us = argc > 2 ? std::atol(argv[2]) : 0;
        const bool spool = argc > 3 && std::string(argv[3]) == "spool";
        const long run = argc > 4 ? std::atol(argv[4]) : 0;
        if (threads < 1 || threads > 256 || pause_us < 0 || (argc > 3 && !spool)) {
            std::fprintf(stderr, "usage: audit_appender [THREADS (1-256)] [PAUSE_US] [spool RUN]\n");
            return 2;
        }

        kw::token::TokenConfig tc;
        tc.module_path = env("KEYWARDEN_HSM_MODULE");
        tc.selector.label = env("KEYWARDEN_TOKEN_LABEL");
        tc.sessions = 4;
        kw::token::Token token(tc);
        token.login(kw::token::SecretString(env("KEYWARDEN_PIN")));
        (void)kw::core::init_root_keys(token);  // normally a no-op: the test ran `hsm-keytool init`
        const kw::core::RootKeys roots = kw::core::load_root_keys(token);

        audit::SqliteSink sink(audit::sqlite_path_from_url(env("KEYWARDEN_STORE_URL")), audit::Durability::process);
        audit::Keys keys(token, roots);
        kw::core::SystemClock clock;
        audit::LogOptions options;
        options.checkpoint_every = 25;
        if (spool) {
            options.spool_store_path = audit::sqlite_path_from_url(env("KEYWARDEN_STORE_URL"));
            options.spool = true;
            options.spool_rotate_bytes = 16384;  // rotations happen within a round, under the kill too
        }
        audit::Log log(sink, keys, clock, options);

        std::mutex out;
        std::vector<std::thread> workers;
        for (int t = 0; t < threads; ++t) {
            workers.emplace_back([&, t] {
                try {
                    for (std::uint64_t i = 0;; ++i) {
                        const std::uint64_t seq = log.record(audit::Record{audit::EventType::key_used,
                                                                           "crash-test:" + std::to_string(t),
                                                                           "crash-key",
                                                                           "",
                                                                           "append",
                                                                           "ok",
                                                                           {{"thread", t}, {"i", i}, {"run", run}}});
                        {
                            std::lock_guard lock(out);
                            if (spool) {
                                std::fprintf(stdout, "spooled %ld %d %llu\n", run, t,
                                             static_cast<unsigned long long>(i));
                            } else {
                                std::fprintf(stdout, "durable %llu\n", static_cast<unsigned long long>(seq));
                            }
                            std::fflush(stdout);
                        }
                        if (pause_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
                    }
                } catch (const std::exception& e) {
                    std::lock_guard lock(out);
                    std::fprintf(stderr, "audit_appender: thread %d: %s\n", t, e.what());
                    std::fflush(stderr);
                    std::_Exit(1);
                }
            });
        }
        for (auto& w : workers) w.join();  // never returns: the test kills us
    } catch (const std::exception& e) {
        std::fprintf(stderr, "audit_appender: %s\n", e.what());
        return 1;
    }
    return 0;
}
