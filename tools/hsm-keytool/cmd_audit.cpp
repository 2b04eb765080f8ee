// audit verify | export | tail | query
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>
#include <unordered_map>

#include "core/audit/export.hpp"
#include "core/audit/verify.hpp"
#include "core/crypto/public_key.hpp"
#include "core/error.hpp"
#include "tools/hsm-keytool/commands.hpp"
#include "tools/hsm-keytool/exit_codes.hpp"
#include "tools/hsm-keytool/io.hpp"
#include "tools/hsm-keytool/options.hpp"

namespace kw::keytool {
namespace {

namespace audit = core::audit;

core::Error usage(const std::string& what) {
    return core::Error(core::ErrorKind::invalid_argument, what);
}

void print_event(const audit::Event& e) {
    std::cout << std::setw(6) << e.seq << "  " << core::format_time(e.time) << "  " << std::left << std::setw(14)
              << audit::to_string(e.type) << std::right << " " << e.actor;
    if (!e.key.empty()) std::cout << "  key=" << e.key;
    if (!e.kid.empty()) std::cout << " kid=" << e.kid;
    std::cout << "  " << e.operation << " -> " << e.outcome;
    if (e.details != "{}") std::cout << "  " << e.details;
    std::cout << "\n";
}

int report(const audit::Report& r, bool json) {
    if (json) {
        std::cout << nlohmann::json{{"ok", r.ok},
                                    {"events", r.events},
                                    {"checkpoints", r.checkpoints},
                                    {"unsigned_tail", r.unsigned_tail},
                                    {"macs_checked", r.macs_checked},
                                    {"first_bad_seq",
                                     r.first_bad_seq ? nlohmann::json(*r.first_bad_seq) : nlohmann::json(nullptr)},
                                    {"problem", audit::to_string(r.problem)},
                                    {"message", r.message}}
                         .dump(2)
                  << "\n";
    } else if (r.ok) {
        std::cout << "OK: " << r.message << "\n";
    } else {
        std::cout << "TAMPERED at seq " << *r.first_bad_seq << " (" << audit::to_string(r.problem) << "): " << r.message
                  << "\n";
    }
    return r.ok ? kOk : kTampered;
}

int verify_offline(const std::string& file, const std::string& pubkey_file, bool json) {
    auto pem = read_input(pubkey_file);
    audit::VerifyOptions o;
    o.public_key = core::pem_to_spki(std::string(pem.begin(), pem.end()));
    std::ifstream in(file);
    if (!in) throw usage("cannot read " + file);
    std::vector<audit::Event> events;
    std::vector<audit::Checkpoint> checkpoints;
    std::string line;
    std::size_t lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.empty()) continue;
        try {
            auto j = nlohmann::json::parse(line);
            const auto type = j.at("record").get<std::string>();
            if (type == "event") {
                events.push_back(audit::event_from_json(j));
            } else if (type == "checkpoint") {
                checkpoints.push_back(audit::checkpoint_from_json(j));
            } else if (type != "header") {
                std::string why = file;
                why += ":" + std::to_string(lineno) + ": unknown record type '";
                why += type;
                why += "'";
                throw usage(why);
            }
        } catch (const nlohmann::json::exception& e) {
            throw usage(file + ":" + std::to_string(lineno) + ": not an audit export line (" + e.what() + ")");
        }
    }
    std::unordered_map<std::string, std::uint64_t> by_hash;
    for (const auto& e : events) by_hash.emplace(e.hash, e.seq);
    o.find_hash = [&](const std::string& h) -> std::optional<std::uint64_t> {
        auto it = by_hash.find(h);
        if (it == by_hash.end()) return std::nullopt;
        return it->second;
    };
    audit::Verifier v(std::move(checkpoints), o);
    for (auto& e : events) {
        if (!v.feed(std::move(e))) break;
    }
    return report(v.finish(), json);
}

int audit_verify(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool audit verify [--offline FILE --pubkey PEM] [--json]");
    desc.add_options()("offline", po::value<std::string>(), "verify an export file without the HSM")(
        "pubkey", po::value<std::string>(), "audit signing public key (PEM) for --offline")("json", "print JSON");
    auto vm = parse(args, desc);
    const bool json = vm.count("json") > 0;
    if (vm.count("offline")) {
        if (!vm.count("pubkey"))
            throw usage("--offline needs --pubkey PEM (from `audit export` or `audit public-key`)");
        return verify_offline(vm["offline"].as<std::string>(), vm["pubkey"].as<std::string>(), json);
    }
    auto& sink = ctx.audit_sink();
    auto& keys = ctx.audit().keys();
    audit::VerifyOptions o;
    o.public_key = keys.public_key();
    o.check_mac = [&](const std::string& h, const std::string& m) { return keys.check_mac(h, m); };
    o.find_hash = [&](const std::string& h) { return sink.seq_of_hash(h); };
    audit::Verifier v(sink.checkpoints(), o);
    sink.for_each([&](const audit::Event& e) { return v.feed(e); });
    return report(v.finish(), json);
}

int audit_export(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool audit export [--out FILE] [--pubkey-out PEM]");
    desc.add_options()("out", po::value<std::string>(), "JSON Lines file (default: stdout)")(
        "pubkey-out", po::value<std::string>(), "also write the audit signing public key (PEM) here");
    auto vm = parse(args, desc);
    auto& log = ctx.audit();
    log.checkpoint_now();  // so the export ends on a signed checkpoint
    auto& sink = ctx.audit_sink();
    const std::string pem = core::spki_to_pem(log.keys().public_key());
    std::string out;
    const auto n = audit::write_export(sink, pem, ctx.token().info().label, ctx.clock().now(),
                                       [&](const std::string& line) { out += line; });
    std::optional<std::string> path;
    if (vm.count("out")) path = vm["out"].as<std::string>();
    write_output(path, std::vector<std::uint8_t>(out.begin(), out.end()));
    if (vm.count("pubkey-out")) {
        write_output(vm["pubkey-out"].as<std::string>(), std::vector<std::uint8_t>(pem.begin(), pem.end()));
    }
    if (path)
        std::cerr << "exported " << n.events << " events and " << n.checkpoints << " checkpoints to " << *path << "\n";
    return kOk;
}

std::optional<core::UnixTime> parse_since(const std::string& text, core::UnixTime now) {
    if (auto d = core::parse_duration(text)) return now - *d;
    std::tm tm{};
    if (strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) != nullptr) return timegm(&tm);
    return std::nullopt;
}

int audit_query(Context& ctx, const Args& args, bool tail) {
    po::options_description desc(
        tail ? "hsm-keytool audit tail [-n N] [--follow] [--json]"
             : "hsm-keytool audit query [--key N] [--event E] [--since T] [--limit N] [--json]");
    desc.add_options()("key", po::value<std::string>(), "only events about this key")(
        "event", po::value<std::string>(), "only this event type (key_used, verify_failed, ...)")(
        "since", po::value<std::string>(), "only events since T: a duration ago (1h, 7d) or 2026-11-25T13:00:00Z")(
        "limit,n", po::value<std::size_t>()->default_value(tail ? 20 : 1000), "at most this many events")(
        "follow,f", "keep printing new events (tail)")("json", "JSON Lines");
    auto vm = parse(args, desc);
    auto& sink = ctx.audit_sink();
    audit::Query q;
    q.limit = vm["limit"].as<std::size_t>();
    if (vm.count("key")) q.key = vm["key"].as<std::string>();
    if (vm.count("event")) {
        q.type = audit::parse_event_type(vm["event"].as<std::string>());
        if (!q.type) throw usage("unknown event type '" + vm["event"].as<std::string>() + "'");
    }
    if (vm.count("since")) {
        q.since = parse_since(vm["since"].as<std::string>(), ctx.clock().now());
        if (!q.since) throw usage("--since wants 1h, 7d or 2026-11-25T13:00:00Z");
    }
    const bool json = vm.count("json") > 0;
    auto emit = [&](const audit::Event& e) {
        if (json) {
            std::cout << audit::to_json(e).dump() << "\n";
        } else {
            print_event(e);
        }
    };
    std::vector<audit::Event> events;
    if (tail) {
        auto last = sink.last_event();
        std::uint64_t head = last ? last->seq : 0;
        q.after_seq = head > q.limit ? head - q.limit : 0;
    }
    events = sink.query(q);
    for (const auto& e : events) emit(e);
    std::uint64_t seen = events.empty() ? q.after_seq.value_or(0) : events.back().seq;
    while (tail && vm.count("follow")) {
        std::cout.flush();
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        q.after_seq = seen;
        for (const auto& e : sink.query(q)) {
            emit(e);
            seen = e.seq;
        }
    }
    return kOk;
}

}  // namespace

int cmd_audit(Context& ctx, const Args& args) {
    if (args.empty()) throw usage("audit: say verify, export, tail or query");
    Args rest(args.begin() + 1, args.end());
    const std::string& sub = args.front();
    if (sub == "verify") return audit_verify(ctx, rest);
    if (sub == "export") return audit_export(ctx, rest);
    if (sub == "tail") return audit_query(ctx, rest, true);
    if (sub == "query") return audit_query(ctx, rest, false);
    throw usage("audit: unknown subcommand '" + sub + "' (verify, export, tail, query)");
}

}  // namespace kw::keytool
