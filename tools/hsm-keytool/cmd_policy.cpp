// policy check | apply | list | show | explain
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.hpp"
#include "tools/hsm-keytool/commands.hpp"
#include "tools/hsm-keytool/exit_codes.hpp"
#include "tools/hsm-keytool/io.hpp"
#include "tools/hsm-keytool/options.hpp"

namespace kw::keytool {
namespace {

namespace rot = core::rotation;

core::Error usage(const std::string& what) {
    return core::Error(core::ErrorKind::invalid_argument, what);
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw core::Error(core::ErrorKind::config, "cannot read policy file " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

nlohmann::json policy_json(const rot::Policy& p) {
    nlohmann::json match = nlohmann::json::object();
    if (p.match.name_glob) match["name"] = *p.match.name_glob;
    if (p.match.type) match["type"] = core::to_string(*p.match.type);
    if (!p.match.labels.empty()) match["labels"] = p.match.labels;
    nlohmann::json phases = nlohmann::json::array();
    for (const auto& ph : p.phases)
        phases.push_back({{"share", ph.share}, {"duration", core::format_duration(ph.duration)}});
    return {{"name", p.name},
            {"source", p.source + ":" + std::to_string(p.line)},
            {"match", match},
            {"priority", p.priority},
            {"cryptoperiod", core::format_duration(p.cryptoperiod)},
            {"strategy", rot::to_string(p.strategy)},
            {"overlap", core::format_duration(p.overlap)},
            {"phases", phases},
            {"rollback_window", core::format_duration(p.rollback_window)},
            {"jwks_lead", core::format_duration(p.jwks_lead)},
            {"keep_versions", p.keep_versions},
            {"max_uses", p.max_uses ? nlohmann::json(*p.max_uses) : nlohmann::json(nullptr)},
            {"expiry_warning", core::format_duration(p.expiry_warning)},
            {"quiet_time", core::format_duration(p.quiet_time)},
            {"alert_hooks", p.alert_hooks}};
}

int policy_check(Context& ctx, const Args& args, bool apply) {
    po::options_description desc(apply ? "hsm-keytool policy apply FILE" : "hsm-keytool policy check FILE");
    desc.add_options()("file", po::value<std::string>()->required(), "policy file (TOML)")("json", "print JSON");
    po::positional_options_description pos;
    pos.add("file", 1);
    auto vm = parse(args, desc, pos);
    const auto path = vm["file"].as<std::string>();
    const std::string text = read_text(path);
    auto set = rot::PolicySet::parse(text, path);
    set.check_conflicts(ctx.store().list_keys());
    if (apply) {
        ctx.keys().audit(core::audit::EventType::policy_changed, "", "", "policy_apply", "ok",
                         {{"source", path}, {"policies", set.policies().size()}});
        ctx.store().save_policy_document(path, text, ctx.clock().now(), Context::actor());
    }
    if (vm.count("json")) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& p : set.policies()) arr.push_back(policy_json(p));
        std::cout << nlohmann::json{{"file", path}, {"ok", true}, {"applied", apply}, {"policies", arr}}.dump(2)
                  << "\n";
    } else {
        std::cout << path << ": " << set.policies().size() << " polic" << (set.policies().size() == 1 ? "y" : "ies")
                  << " OK" << (apply ? ", applied" : "") << "\n";
    }
    return kOk;
}

int policy_list(Context& ctx, const Args& args, bool show) {
    po::options_description desc(show ? "hsm-keytool policy show [NAME] [--json]" : "hsm-keytool policy list [--json]");
    desc.add_options()("name", po::value<std::string>(), "one policy")("json", "print JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    const auto& set = ctx.policies();
    std::vector<const rot::Policy*> chosen;
    for (const auto& p : set.policies()) {
        if (!vm.count("name") || p.name == vm["name"].as<std::string>()) chosen.push_back(&p);
    }
    if (vm.count("name") && chosen.empty()) {
        throw core::Error(core::ErrorKind::not_found, "no applied policy named '" + vm["name"].as<std::string>() + "'");
    }
    if (vm.count("json") || show) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto* p : chosen) arr.push_back(policy_json(*p));
        std::cout << arr.dump(2) << "\n";
        return kOk;
    }
    for (const auto* p : chosen) {
        std::cout << p->name << "  " << rot::to_string(p->strategy) << " every "
                  << core::format_duration(p->cryptoperiod) << "  priority " << p->priority << "  (" << p->source << ":"
                  << p->line << ")\n";
    }
    if (chosen.empty()) std::cout << "no policies applied (hsm-keytool policy apply FILE)\n";
    return kOk;
}

int policy_explain(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool policy explain KEY [--json]");
    desc.add_options()("name", po::value<std::string>()->required(), "key name")("json", "print JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    auto key = ctx.keys().get(vm["name"].as<std::string>());
    const auto* policy = ctx.policies().for_key(key);
    auto due = ctx.engine().next_due(key);
    if (vm.count("json")) {
        std::cout << nlohmann::json{{"key", key.name},
                                    {"policy", policy ? policy_json(*policy) : nlohmann::json(nullptr)},
                                    {"next_due",
                                     due ? nlohmann::json(core::format_time(*due)) : nlohmann::json(nullptr)}}
                         .dump(2)
                  << "\n";
        return kOk;
    }
    if (policy == nullptr) {
        std::cout << key.name << ": no policy applies; it rotates only by hand\n";
        return kOk;
    }
    std::cout << key.name << ": policy " << policy->name << " (" << policy->source << ":" << policy->line << ")\n"
              << "  strategy " << rot::to_string(policy->strategy) << ", every "
              << core::format_duration(policy->cryptoperiod) << "\n"
              << "  next rotation: " << (due ? core::format_time(*due) : "not rotatable (revoked or no active primary)")
              << "\n";
    return kOk;
}

}  // namespace

int cmd_policy(Context& ctx, const Args& args) {
    if (args.empty()) throw usage("policy: say check, apply, list, show or explain");
    Args rest(args.begin() + 1, args.end());
    const std::string& sub = args.front();
    if (sub == "check") return policy_check(ctx, rest, false);
    if (sub == "apply") return policy_check(ctx, rest, true);
    if (sub == "list") return policy_list(ctx, rest, false);
    if (sub == "show") return policy_list(ctx, rest, true);
    if (sub == "explain") return policy_explain(ctx, rest);
    throw usage("policy: unknown subcommand '" + sub + "' (check, apply, list, show, explain)");
}

}  // namespace kw::keytool
