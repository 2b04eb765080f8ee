// rotate NAME | --due | status | history | stats | rollback
#include <iomanip>
#include <iostream>

#include "core/error.hpp"
#include "tools/hsm-keytool/commands.hpp"
#include "tools/hsm-keytool/exit_codes.hpp"
#include "tools/hsm-keytool/io.hpp"
#include "tools/hsm-keytool/options.hpp"

namespace kw::keytool {
namespace {

core::Error usage(const std::string& what) {
    return core::Error(core::ErrorKind::invalid_argument, what);
}

nlohmann::json rotation_json(const core::RotationRecord& r) {
    auto t = [](const std::optional<core::UnixTime>& v) {
        return v ? nlohmann::json(core::format_time(*v)) : nlohmann::json(nullptr);
    };
    nlohmann::json j{{"id", r.id},
                     {"key", r.key_name},
                     {"strategy", r.strategy},
                     {"policy", r.policy},
                     {"from_kid", r.from_kid},
                     {"to_kid", r.to_kid},
                     {"state", r.state},
                     {"phase", r.phase},
                     {"started_at", core::format_time(r.started_at)},
                     {"published_at", t(r.published_at)},
                     {"promoted_at", t(r.promoted_at)},
                     {"finished_at", t(r.finished_at)},
                     {"outcome", r.outcome},
                     {"error", r.error}};
    if (r.finished_at) j["duration_seconds"] = *r.finished_at - r.started_at;
    return j;
}

void print_rotation(const core::RotationRecord& r) {
    std::cout << "#" << r.id << " " << r.key_name << " " << r.strategy << ": " << r.from_kid << " -> " << r.to_kid
              << "  " << r.state;
    if (r.state == "phasing") std::cout << " (phase " << r.phase + 1 << ")";
    if (!r.outcome.empty()) std::cout << " [" << r.outcome << "]";
    std::cout << "  started " << core::format_time(r.started_at);
    if (r.finished_at) std::cout << ", took " << (*r.finished_at - r.started_at) << " s";
    if (!r.error.empty()) std::cout << "\n    " << r.error;
    std::cout << "\n";
}

int rotate_status(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool rotate status NAME [--json]");
    desc.add_options()("name", po::value<std::string>()->required(), "key name")("json", "print JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    const auto name = vm["name"].as<std::string>();
    auto& engine = ctx.engine();
    auto key = ctx.keys().get(name);
    auto r = engine.status(name);
    auto due = engine.next_due(key);
    if (vm.count("json")) {
        nlohmann::json j{{"key", name},
                         {"rotation", r ? rotation_json(*r) : nlohmann::json(nullptr)},
                         {"next_due", due ? nlohmann::json(core::format_time(*due)) : nlohmann::json(nullptr)},
                         {"primary_kid", key.primary() ? nlohmann::json(key.primary()->kid) : nlohmann::json(nullptr)}};
        if (key.rollout_kid) j["rollout"] = {{"kid", *key.rollout_kid}, {"share", key.rollout_share}};
        std::cout << j.dump(2) << "\n";
        return kOk;
    }
    std::cout << name << ": primary " << (key.primary() ? key.primary()->kid : "-");
    if (key.rollout_kid) std::cout << ", " << key.rollout_share << "% of callers on " << *key.rollout_kid;
    std::cout << "\nnext due: " << (due ? core::format_time(*due) : "no policy applies") << "\n";
    if (r) print_rotation(*r);
    return kOk;
}

int rotate_history(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool rotate history [NAME] [--limit N] [--json]");
    desc.add_options()("name", po::value<std::string>()->default_value(""), "key name (default: all)")(
        "limit", po::value<std::size_t>()->default_value(50), "most recent N")("json", "print JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    auto h = ctx.engine().history(vm["name"].as<std::string>(), vm["limit"].as<std::size_t>());
    if (vm.count("json")) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& r : h) arr.push_back(rotation_json(r));
        std::cout << arr.dump(2) << "\n";
        return kOk;
    }
    for (const auto& r : h) print_rotation(r);
    if (h.empty()) std::cout << "no rotations yet\n";
    return kOk;
}

int rotate_stats(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool rotate stats [--json]");
    desc.add_options()("json", "print JSON");
    auto vm = parse(args, desc);
    auto stats = ctx.engine().stats();
    if (vm.count("json")) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& s : stats) {
            arr.push_back({{"strategy", s.strategy},
                           {"total", s.total},
                           {"succeeded", s.succeeded},
                           {"failed", s.failed},
                           {"rolled_back", s.rolled_back},
                           {"in_progress", s.in_progress},
                           {"success_rate", s.success_rate},
                           {"mean_seconds", s.mean_seconds},
                           {"p95_seconds", s.p95_seconds}});
        }
        std::cout << arr.dump(2) << "\n";
        return kOk;
    }
    std::cout << std::left << std::setw(13) << "STRATEGY" << std::right << std::setw(7) << "TOTAL" << std::setw(6)
              << "OK" << std::setw(8) << "FAILED" << std::setw(10) << "ROLLBACK" << std::setw(8) << "OPEN"
              << std::setw(9) << "SUCCESS" << std::setw(11) << "MEAN s" << std::setw(10) << "P95 s"
              << "\n";
    for (const auto& s : stats) {
        std::cout << std::left << std::setw(13) << s.strategy << std::right << std::setw(7) << s.total << std::setw(6)
                  << s.succeeded << std::setw(8) << s.failed << std::setw(10) << s.rolled_back << std::setw(8)
                  << s.in_progress << std::setw(8) << std::fixed << std::setprecision(1) << 100.0 * s.success_rate
                  << "%" << std::setw(11) << s.mean_seconds << std::setw(10) << s.p95_seconds << "\n";
    }
    if (stats.empty()) std::cout << "no rotations yet\n";
    return kOk;
}

int rotate_rollback(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool rotate rollback NAME [--json]");
    desc.add_options()("name", po::value<std::string>()->required(), "key name")("json", "print JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    auto r = ctx.engine().rollback(vm["name"].as<std::string>());
    if (vm.count("json")) {
        std::cout << rotation_json(r).dump(2) << "\n";
    } else {
        std::cout << "rolled back " << r.key_name << ": " << r.from_kid << " signs again; " << r.to_kid
                  << " is deactivated\n";
    }
    return kOk;
}

}  // namespace

int cmd_rotate(Context& ctx, const Args& args) {
    if (!args.empty()) {
        Args rest(args.begin() + 1, args.end());
        if (args.front() == "status") return rotate_status(ctx, rest);
        if (args.front() == "history") return rotate_history(ctx, rest);
        if (args.front() == "stats") return rotate_stats(ctx, rest);
        if (args.front() == "rollback") return rotate_rollback(ctx, rest);
    }
    po::options_description desc(
        "hsm-keytool rotate NAME [--strategy S] | rotate --due  (also: status, history, stats, rollback)");
    desc.add_options()("name", po::value<std::string>(), "key to rotate now")(
        "strategy", po::value<std::string>(), "IMMEDIATE, OVERLAPPING, GRADUAL or BLUE_GREEN (default: the policy's)")(
        "due", "advance rotations in progress and rotate every key whose policy says it is due (for cron)")(
        "json", "print JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    auto& engine = ctx.engine();
    if (vm.count("due")) {
        if (vm.count("name")) throw usage("rotate: give a key name or --due, not both");
        auto touched = engine.run_due();
        if (vm.count("json")) {
            nlohmann::json arr = nlohmann::json::array();
            for (const auto& r : touched) arr.push_back(rotation_json(r));
            std::cout << arr.dump(2) << "\n";
        } else {
            for (const auto& r : touched) print_rotation(r);
            std::cout << touched.size() << " rotation" << (touched.size() == 1 ? "" : "s") << " touched\n";
        }
        int failed = 0;
        for (const auto& r : touched) failed += r.outcome == "failed" ? 1 : 0;
        return failed == 0 ? kOk : kFailed;
    }
    if (!vm.count("name")) throw usage("rotate: which key? (or --due)");
    std::optional<core::rotation::Strategy> strategy;
    if (vm.count("strategy")) {
        strategy = core::rotation::parse_strategy(vm["strategy"].as<std::string>());
        if (!strategy) throw usage("unknown strategy '" + vm["strategy"].as<std::string>() + "'");
    }
    auto result = engine.rotate(vm["name"].as<std::string>(), strategy);
    if (vm.count("json")) {
        auto j = rotation_json(result.record);
        if (result.new_token) j["token"] = *result.new_token;
        std::cout << j.dump(2) << "\n";
    } else {
        print_rotation(result.record);
        if (result.new_token) {
            std::cout << *result.new_token << "\n";
            std::cerr << "the successor token above is shown only this once\n";
        }
    }
    return result.record.outcome == "failed" ? kFailed : kOk;
}

}  // namespace kw::keytool
