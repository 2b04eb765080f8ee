// suspend, resume, deactivate, compromise, destroy.
#include <unistd.h>

#include <iostream>

#include "core/error.hpp"
#include "tools/hsm-keytool/commands.hpp"
#include "tools/hsm-keytool/exit_codes.hpp"
#include "tools/hsm-keytool/io.hpp"
#include "tools/hsm-keytool/options.hpp"

namespace kw::keytool {
namespace {

int run(Context& ctx, const Args& args, core::LifecycleOp op) {
    const std::string verb(core::to_string(op));
    po::options_description desc("hsm-keytool " + verb + " NAME [--reason TEXT] [--json]" +
                                 (op == core::LifecycleOp::destroy ? " [--yes] [--force]" : ""));
    desc.add_options()("name", po::value<std::string>()->required(), "key name")(
        "reason", po::value<std::string>()->default_value(""), "why (kept in the audit log)")("json", "print JSON");
    if (op == core::LifecycleOp::destroy) {
        desc.add_options()("yes", "do not ask for confirmation")(
            "force", "also destroy versions that are still active or suspended");
    }
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    const auto name = vm["name"].as<std::string>();
    if (op == core::LifecycleOp::destroy && !vm.count("yes")) {
        if (isatty(STDIN_FILENO) == 0) {
            throw core::Error(core::ErrorKind::invalid_argument, "destroy needs --yes when not run from a terminal");
        }
        std::cerr << "Destroy every version of '" << name << "'? Key material is erased for good. Type the key name: ";
        std::string answer;
        std::getline(std::cin, answer);
        if (answer != name) {
            std::cerr << "not destroyed\n";
            return kFailed;
        }
    }
    auto changes = ctx.keys().apply(name, op, vm["reason"].as<std::string>(), vm.count("force") > 0);
    if (vm.count("json")) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& c : changes) {
            arr.push_back({{"kid", c.kid},
                           {"from", core::to_string(c.from)},
                           {"to", core::to_string(c.to)},
                           {"at", core::format_time(c.at)}});
        }
        std::cout << nlohmann::json{{"name", name}, {"changes", arr}}.dump(2) << "\n";
        return kOk;
    }
    for (const auto& c : changes) {
        std::cout << name << " " << c.kid << ": " << core::to_string(c.from) << " -> " << core::to_string(c.to) << "\n";
    }
    return kOk;
}

}  // namespace

int cmd_suspend(Context& ctx, const Args& args) {
    return run(ctx, args, core::LifecycleOp::suspend);
}
int cmd_resume(Context& ctx, const Args& args) {
    return run(ctx, args, core::LifecycleOp::resume);
}
int cmd_deactivate(Context& ctx, const Args& args) {
    return run(ctx, args, core::LifecycleOp::deactivate);
}
int cmd_compromise(Context& ctx, const Args& args) {
    return run(ctx, args, core::LifecycleOp::compromise);
}
int cmd_destroy(Context& ctx, const Args& args) {
    return run(ctx, args, core::LifecycleOp::destroy);
}

}  // namespace kw::keytool
