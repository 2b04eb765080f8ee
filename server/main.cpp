// keywardend: the long-running keywarden service.
//
//   keywardend [--config PATH] [--listen HOST:PORT] [--unix-socket PATH] [--threads N]
//
// Holds the one HSM session, the store and the audit log; serves the HTTP
// API (docs/api.md) on TCP and a unix socket; runs the rotation scheduler.
// SIGTERM/SIGINT: stop accepting, finish in-flight requests, flush token use
// counts and the audit log, exit 0. SIGHUP: reload rotation policies from the store.
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <condition_variable>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/error.hpp"
#include "core/root_keys.hpp"
#include "core/store/sqlite/database.hpp"
#include "core/store/sqlite/wal_checkpointer.hpp"
#include "core/thread_name.hpp"
#include "server/alert_hooks.hpp"
#include "server/http_server.hpp"
#include "server/local/local_server.hpp"
#include "server/rotation_counter.hpp"
#include "server/socket_access.hpp"
#include "token/error.hpp"
#include "token/pin.hpp"

namespace po = boost::program_options;
using namespace kw;

namespace {

void log_line(const std::string& msg) {
    std::cerr << "keywardend: " << msg << std::endl;
}

int run(int argc, char** argv) {
    // Before any store connection: SQLite takes process-wide settings only then.
    (void)core::sqlite::configure_sqlite_for_server();
    po::options_description desc("keywardend [options]");
    desc.add_options()("help,h", "this help")("config", po::value<std::string>(), "keywarden.toml")(
        "listen", po::value<std::string>(), "TCP HOST:PORT (overrides [server] listen; '' disables)")(
        "unix-socket", po::value<std::string>(), "unix socket path (overrides [server] unix_socket)")(
        "threads", po::value<std::size_t>()->default_value(0), "HTTP worker threads (0: one per CPU, at least 2)")(
        "local-socket", po::value<std::string>(),
        "unix socket of the local binary protocol (overrides [server] local_socket)");
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
        std::cout << desc << "\n";
        return 0;
    }
    std::optional<std::string> config_path;
    if (vm.count("config")) config_path = vm["config"].as<std::string>();
    core::Config config = core::load_config(config_path);
    if (vm.count("listen")) config.listen = vm["listen"].as<std::string>();
    if (vm.count("unix-socket")) config.unix_socket = vm["unix-socket"].as<std::string>();
    if (vm.count("local-socket")) config.local_socket = vm["local-socket"].as<std::string>();

    // Signals are handled by one thread with sigwait; block them everywhere first.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    token::Token token(core::token_config(config));
    token::PinSource pin_source;
    pin_source.env_var = config.pin_env;
    pin_source.file = config.pin_file;
    token.login(token::read_pin(pin_source));
    ::unsetenv(config.pin_env.c_str());  // nothing we start later inherits it

    core::RootKeys roots = core::load_root_keys(token);
    // WAL checkpoints run in the background, never inside a commit a request
    // waits on (wal_checkpointer.hpp).
    auto store = core::open_store(config.store_url, core::StoreOptions{config.busy_timeout_ms, false});
    const std::string store_path = core::audit::sqlite_path_from_url(config.store_url);
    core::audit::SqliteSink sink(
        store_path, config.durability == "power" ? core::audit::Durability::power : core::audit::Durability::process,
        config.busy_timeout_ms, false);
    // The audit writer commits every few milliseconds under load: it keeps
    // the WAL under 32 MiB itself (wal_checkpointer.hpp says why it must).
    // Spooled, that writer is the ingester thread; with durability "power"
    // it is a request's group commit, which then also waits for the
    // checkpoint (about 10 ms, once per 32 MiB).
    sink.restart_wal_past(8192);
    core::sqlite::WalCheckpointer checkpointer(store_path, std::chrono::milliseconds(200));
    core::audit::Keys audit_keys(token, roots);
    core::SystemClock clock;
    core::audit::LogOptions lo;
    lo.checkpoint_every = static_cast<std::uint64_t>(config.checkpoint_every);
    lo.checkpoint_seconds = config.checkpoint_seconds;
    // Requests make their events durable in a spool and a thread stores them
    // in batches (log.hpp); a spool a crashed keywardend left is stored first.
    lo.spool_store_path = store_path;
    lo.spool = config.durability == "process" && config.ingest_ms > 0;
    lo.ingest_interval = std::chrono::milliseconds(config.ingest_ms);
    core::audit::Log audit(sink, audit_keys, clock, lo);
    core::KeyService keys(token, *store, roots, clock, audit, "keywardend", config.handle_cache_size);
    // Declared after the store, so it is destroyed (and flushes) before it.
    core::tokens::UsageAccumulator usage(*store, std::chrono::milliseconds(config.usage_flush_ms));
    core::tokens::TokenService tokens(keys, &usage);
    auto doc = store->policy_document();
    core::rotation::PolicySet policies =
        doc ? core::rotation::PolicySet::parse(doc->second, doc->first) : core::rotation::PolicySet{};
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    core::rotation::Engine engine(
        keys, tokens, policies, core::rotation::EngineOptions{std::string(host) + ":" + std::to_string(getpid()), 300});
    std::mutex rotation_mutex;
    core::ratelimit::Gcra token_limits(
        core::ratelimit::Limit{config.token_limit, config.token_period_ms, config.token_burst});
    core::ratelimit::Gcra key_limits(core::ratelimit::Limit{config.key_limit, config.key_period_ms, config.key_burst});
    // Limits set through the admin API before a restart win over the config.
    server::apply_stored_limits(*store, token_limits, key_limits);
    core::ratelimit::Gcra not_found_limits(core::ratelimit::Limit{30, 60000, 30});  // 30 unknown tokens a minute
    core::ratelimit::DenialSampler denials;  // 10 per key per minute audited, then 1 in 100
    core::metrics::Registry metrics;
    std::atomic<bool> draining{false};

    metrics.help("keywarden_http_requests_total", "counter", "HTTP requests by route and status");
    metrics.help("keywarden_http_request_seconds", "histogram", "HTTP request latency");
    metrics.help("keywarden_token_verifications_total", "counter", "API token verifications by code");
    metrics.help("keywarden_rate_limit_denials_total", "counter", "requests refused by the rate limiter");
    metrics.help("keywarden_hsm_operation_seconds", "histogram", "HSM sign/HMAC latency");
    metrics.help("keywarden_hsm_errors_total", "counter", "PKCS#11 errors by CKR name");
    metrics.gauge_fn("keywarden_audit_queue_depth", [&] {
        return std::vector<std::pair<core::metrics::Labels, double>>{{{}, static_cast<double>(audit.queue_depth())}};
    });
    metrics.help("keywarden_store_wal_checkpoints_total", "counter",
                 "store WAL checkpoints: restarted (the audit writer started the WAL over), restart_deferred (busy, "
                 "tried again at the next commit), failed (background rounds)");
    metrics.gauge_fn("keywarden_store_wal_checkpoints_total", [&] {
        return std::vector<std::pair<core::metrics::Labels, double>>{
            {{{"outcome", "restarted"}}, static_cast<double>(sink.wal_restarts())},
            {{{"outcome", "restart_deferred"}}, static_cast<double>(sink.wal_restarts_deferred())},
            {{{"outcome", "failed"}}, static_cast<double>(checkpointer.failures())}};
    });
    metrics.gauge_fn("keywarden_key_versions", [&] {
        std::vector<std::pair<core::metrics::Labels, double>> out;
        for (const auto& [state, n] : store->stats().versions_by_state)
            out.push_back({{{"state", state}}, static_cast<double>(n)});
        return out;
    });
    metrics.gauge_fn("keywarden_next_rotation_seconds", [&] {
        std::lock_guard lock(rotation_mutex);
        std::optional<core::UnixTime> next;
        for (const auto& k : store->list_keys()) {
            if (auto d = engine.next_due(k); d && (!next || *d < *next)) next = d;
        }
        if (!next) return std::vector<std::pair<core::metrics::Labels, double>>{};
        return std::vector<std::pair<core::metrics::Labels, double>>{{{}, static_cast<double>(*next - clock.now())}};
    });

    core::alerts::Options alert_options;
    alert_options.ca_file = config.alert_ca_file;
    core::alerts::Dispatcher alerts(server::global_targets(config), metrics, alert_options);
    server::RotationCounter rotation_counter(metrics, clock.now());
    server::AuditAlarm audit_alarm;
    metrics.help("keywarden_rotation_check_errors_total", "counter", "scheduler passes that failed");
    core::alerts::SpikeOptions spike_options;
    spike_options.per_minute = config.verify_failed_per_minute;
    spike_options.factor = config.unknown_token_factor;
    spike_options.min_count = config.unknown_token_min;
    core::alerts::SpikeDetector spikes(spike_options, [&clock] { return clock.now(); });
    server::App app{config,
                    token,
                    *store,
                    audit,
                    keys,
                    tokens,
                    usage,
                    engine,
                    policies,
                    rotation_mutex,
                    token_limits,
                    key_limits,
                    not_found_limits,
                    denials,
                    metrics,
                    draining,
                    alerts,
                    spikes,
                    rotation_counter,
                    audit_alarm};
    server::HttpOptions ho;
    ho.listen = config.listen;
    ho.unix_socket = config.unix_socket;
    // Unknown groups are refused here, before anything listens.
    if (!config.unix_socket_group.empty())
        ho.unix_socket_gid = server::resolve_group(config.unix_socket_group, "server.unix_socket_group");
    std::optional<gid_t> local_gid;
    if (!config.local_socket_group.empty())
        local_gid = server::resolve_group(config.local_socket_group, "server.local_socket_group");
    ho.threads = vm["threads"].as<std::size_t>();
    ho.spin = std::chrono::microseconds(config.spin_us);
    ho.body_limit = static_cast<std::size_t>(config.max_body_bytes);
    ho.header_limit = static_cast<std::size_t>(config.max_header_bytes);
    ho.request_timeout_s = static_cast<int>(config.request_timeout_s);
    // More workers than CPUs only adds thread hand-offs, which cost more than
    // the work of a verification here (docs/performance.md).
    if (ho.threads == 0) ho.threads = std::max<std::size_t>(2, std::thread::hardware_concurrency());
    server::HttpServer http(app, ho);
    http.start();
    std::optional<server::local::LocalServer> local;
    if (!config.local_socket.empty()) {
        local.emplace(app, server::local::LocalOptions{config.local_socket, local_gid,
                                                       static_cast<std::size_t>(config.local_max_connections)});
        local->start();
        log_line("local protocol on unix " + config.local_socket);
    }
    log_line("serving on " +
             (ho.listen.empty()
                  ? std::string("-")
                  : "tcp " + ho.listen.substr(0, ho.listen.rfind(':')) + ":" + std::to_string(http.tcp_port())) +
             (ho.unix_socket.empty() ? "" : " and unix " + ho.unix_socket) + "; token '" + token.info().label + "'");

    // The rotation scheduler.
    std::mutex stop_mutex;
    std::condition_variable stop_cv;
    bool stopping = false;
    std::map<std::string, core::UnixTime> expiry_alerted;
    std::thread scheduler([&] {
        core::name_this_thread("kw-rotation");
        for (;;) {
            {
                std::unique_lock lock(stop_mutex);
                if (stop_cv.wait_for(lock, std::chrono::seconds(config.rotation_check_interval),
                                     [&] { return stopping; }))
                    return;
            }
            try {
                std::lock_guard lock(rotation_mutex);
                for (const auto& r : engine.run_due()) {
                    rotation_counter.observe(r);
                    if (r.outcome == "failed") {
                        const auto* policy = server::rotation_policy(policies, keys, r);
                        alerts.notify("rotation_failed", r.key_name,
                                      "rotation " + std::to_string(r.id) + " failed: " + r.error,
                                      {{"strategy", r.strategy},
                                       {"from", r.from_kid},
                                       {"to", r.to_kid},
                                       {"policy", policy != nullptr ? policy->name : ""}},
                                      server::policy_targets(policy, config));
                    }
                }
            } catch (const std::exception& e) {
                metrics.inc("keywarden_rotation_check_errors_total");
                log_line(std::string("rotation check failed: ") + e.what());
            }
            // Keys that expire within their policy's warning lead (14 days
            // without a policy): one alert per key per day. Checked even when
            // the rotation pass failed.
            try {
                std::lock_guard lock(rotation_mutex);  // guards the policy set
                const auto now = clock.now();
                for (const auto& k : store->list_keys()) {
                    if (!k.expires_at || k.revoked_at || *k.expires_at <= now) continue;
                    const auto* p = policies.for_key(k);
                    const std::int64_t lead = p != nullptr ? p->expiry_warning : std::int64_t{14} * 86400;
                    if (*k.expires_at - now > lead) continue;
                    auto& last = expiry_alerted[k.id];
                    if (now - last < 86400) continue;
                    last = now;
                    alerts.notify(
                        "key_expiring", k.name, "key expires at " + core::format_time(*k.expires_at),
                        {{"expires_at", core::format_time(*k.expires_at)}, {"policy", p != nullptr ? p->name : ""}},
                        server::policy_targets(p, config));
                }
            } catch (const std::exception& e) {
                metrics.inc("keywarden_rotation_check_errors_total");
                log_line(std::string("expiry check failed: ") + e.what());
            }
        }
    });

    for (;;) {
        int sig = 0;
        sigwait(&signals, &sig);
        if (sig == SIGHUP) {
            try {
                std::lock_guard lock(rotation_mutex);
                auto d = store->policy_document();
                policies = d ? core::rotation::PolicySet::parse(d->second, d->first) : core::rotation::PolicySet{};
                log_line("policies reloaded: " + std::to_string(policies.policies().size()));
            } catch (const std::exception& e) {
                log_line(std::string("policy reload failed, keeping the old set: ") + e.what());
            }
            continue;
        }
        log_line("shutting down: finishing in-flight requests");
        draining = true;
        http.stop(10);
        if (local) local->stop();
        {
            std::lock_guard lock(stop_mutex);
            stopping = true;
        }
        stop_cv.notify_all();
        scheduler.join();
        try {
            usage.flush();
        } catch (const std::exception& e) {
            log_line(std::string("could not flush token use counts: ") + e.what());
        }
        audit.checkpoint_now();
        log_line("stopped cleanly");
        return 0;
    }
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const po::error& e) {
        std::cerr << "keywardend: " << e.what() << "\n";
        return 2;
    } catch (const token::Pkcs11Error& e) {
        std::cerr << "keywardend: " << e.what() << "\n";
        return e.rv() == CKR_PIN_INCORRECT ? 4 : 1;
    } catch (const std::exception& e) {
        std::cerr << "keywardend: " << e.what() << "\n";
        return 1;
    }
}
