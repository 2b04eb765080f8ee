// token issue | verify | list | revoke
#include <iomanip>
#include <iostream>

#include "core/error.hpp"
#include "core/tokens/token_service.hpp"
#include "tools/hsm-keytool/commands.hpp"
#include "tools/hsm-keytool/exit_codes.hpp"
#include "tools/hsm-keytool/io.hpp"
#include "tools/hsm-keytool/options.hpp"

namespace kw::keytool {
namespace {

core::Error usage(const std::string& what) {
    return core::Error(core::ErrorKind::invalid_argument, what);
}

int token_issue(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool token issue --name N [options]");
    std::vector<std::string> scopes;
    desc.add_options()("name", po::value<std::string>()->required(), "unique key name")(
        "scope", po::value(&scopes)->composing(), "scope (repeat or comma-separate)")(
        "expires-in", po::value<std::string>(), "lifetime: 30d, 12h, 3600")(
        "prefix", po::value<std::string>()->default_value("kw_live"), "token prefix (a-z, 0-9, _)")(
        "max-uses", po::value<long long>(), "uses before the token is exhausted (the first allowance with --refill)")(
        "refill", po::value<std::string>(),
        "credits: restore the allowance daily (00:00 UTC), monthly[:DAY] (00:00 UTC on DAY, default 1) or every "
        "duration (12h)")("refill-amount", po::value<long long>(), "uses after each refill (default: --max-uses)")(
        "provisioning", "a short-lived, limited-use bootstrap token (defaults: 1 use, 1h)")(
        "owner", po::value<std::string>(), "owning team or service")(
        "out", po::value<std::string>(), "write the token to FILE (0600) instead of stdout")("json", "print JSON");
    auto vm = parse(args, desc);
    core::tokens::IssueRequest r;
    r.name = vm["name"].as<std::string>();
    r.scopes = split_scopes(scopes);
    if (vm.count("expires-in")) {
        r.expires_in = core::parse_duration(vm["expires-in"].as<std::string>());
        if (!r.expires_in || *r.expires_in == 0) throw usage("--expires-in wants a duration like 30d, 12h or 3600");
    }
    r.prefix = vm["prefix"].as<std::string>();
    if (vm.count("max-uses")) r.max_uses = vm["max-uses"].as<long long>();
    if (vm.count("refill")) {
        r.refill = core::RefillSchedule::parse(vm["refill"].as<std::string>());
        if (!r.refill) throw usage("--refill wants daily, monthly, monthly:DAY (1-28) or a duration like 12h");
    }
    if (vm.count("refill-amount")) r.refill_amount = vm["refill-amount"].as<long long>();
    if (vm.count("provisioning")) r.type = core::KeyType::provisioning;
    if (vm.count("owner")) r.owner = vm["owner"].as<std::string>();
    core::tokens::TokenService tokens(ctx.keys());
    auto issued = tokens.issue(r);
    const std::string token(issued.token.view());
    if (vm.count("out")) {
        std::string line = token + "\n";
        write_output(vm["out"].as<std::string>(), std::vector<std::uint8_t>(line.begin(), line.end()));
    }
    if (vm.count("json")) {
        nlohmann::json j = key_json(issued.key);
        if (!vm.count("out")) j["token"] = token;
        j["display"] = issued.display;
        std::cout << j.dump(2) << "\n";
    } else if (!vm.count("out")) {
        std::cout << token << "\n";
        std::cerr << "issued " << issued.key.name << " (" << issued.display
                  << "): this is the only time the token is shown\n";
    } else {
        std::cout << "issued " << issued.key.name << " (" << issued.display << ") into " << vm["out"].as<std::string>()
                  << "\n";
    }
    return kOk;
}

int token_verify(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool token verify [--in FILE] [--scope S] [--json]  (token on stdin)");
    desc.add_options()("in", po::value<std::string>(), "read the token from FILE (default: stdin)")(
        "scope", po::value<std::string>(), "require this scope")("json", "print JSON");
    auto vm = parse(args, desc);
    auto raw = read_input(vm.count("in") ? std::optional<std::string>(vm["in"].as<std::string>()) : std::nullopt);
    token::SecretString text(std::string(raw.begin(), raw.end()));
    token::secure_wipe(raw.data(), raw.size());
    std::string_view t = text.view();
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.remove_suffix(1);
    std::optional<std::string> scope;
    if (vm.count("scope")) scope = vm["scope"].as<std::string>();
    core::tokens::TokenService tokens(ctx.keys());
    auto v = tokens.verify(t, scope ? std::optional<std::string_view>(*scope) : std::nullopt);
    const bool valid = v.code == core::tokens::VerifyCode::VALID;
    if (vm.count("json")) {
        nlohmann::json j{{"code", core::tokens::to_string(v.code)}, {"valid", valid}};
        if (!v.name.empty()) {
            j["key_id"] = v.key_id;
            j["name"] = v.name;
            j["kid"] = v.kid;
            j["scopes"] = v.scopes;
            j["expires_at"] = v.expires_at ? nlohmann::json(core::format_time(*v.expires_at)) : nlohmann::json(nullptr);
            j["remaining_uses"] = v.remaining_uses ? nlohmann::json(*v.remaining_uses) : nlohmann::json(nullptr);
            j["next_refill"] =
                v.next_refill ? nlohmann::json(core::format_time(*v.next_refill)) : nlohmann::json(nullptr);
        }
        std::cout << j.dump(2) << "\n";
    } else {
        std::cout << core::tokens::to_string(v.code);
        if (!v.name.empty()) {
            std::cout << "  key " << v.name << " (kid " << v.kid << ")";
            if (v.remaining_uses) std::cout << ", " << *v.remaining_uses << " uses left";
            if (v.next_refill) std::cout << " (refill " << core::format_time(*v.next_refill) << ")";
            if (v.expires_at) std::cout << ", expires " << core::format_time(*v.expires_at);
        }
        std::cout << "\n";
    }
    return valid ? kOk : kInvalid;
}

int token_list(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool token list [--json]");
    desc.add_options()("json", "print JSON");
    auto vm = parse(args, desc);
    core::tokens::TokenService tokens(ctx.keys());
    auto listed = tokens.list();
    const auto now = ctx.clock().now();
    if (vm.count("json")) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& l : listed) {
            auto j = key_json(l.key);
            j["status"] = key_status(l.key, now);
            nlohmann::json toks = nlohmann::json::array();
            for (const auto& t : l.tokens) {
                toks.push_back({{"kid", t.kid},
                                {"display", t.display},
                                {"uses", t.uses},
                                {"max_uses", t.max_uses ? nlohmann::json(*t.max_uses) : nlohmann::json(nullptr)},
                                {"last_used_at", t.last_used_at ? nlohmann::json(core::format_time(*t.last_used_at))
                                                                : nlohmann::json(nullptr)},
                                {"pepper_version", t.pepper_version}});
            }
            j["tokens"] = toks;
            arr.push_back(j);
        }
        std::cout << arr.dump(2) << "\n";
        return kOk;
    }
    std::cout << std::left << std::setw(24) << "NAME" << std::setw(14) << "TYPE" << std::setw(22) << "TOKEN"
              << std::setw(12) << "STATUS" << std::setw(10) << "USES"
              << "EXPIRES\n";
    for (const auto& l : listed) {
        for (const auto& t : l.tokens) {
            std::string uses = std::to_string(t.uses) + (t.max_uses ? "/" + std::to_string(*t.max_uses) : "");
            std::cout << std::setw(24) << l.key.name << std::setw(14) << core::to_string(l.key.type) << std::setw(22)
                      << t.display << std::setw(12) << key_status(l.key, now) << std::setw(10) << uses
                      << (l.key.expires_at ? core::format_time(*l.key.expires_at) : "never") << "\n";
        }
    }
    return kOk;
}

}  // namespace

int cmd_token(Context& ctx, const Args& args) {
    if (args.empty()) throw usage("token: say issue, verify, list or revoke");
    Args rest(args.begin() + 1, args.end());
    const std::string& sub = args.front();
    if (sub == "issue") return token_issue(ctx, rest);
    if (sub == "verify") return token_verify(ctx, rest);
    if (sub == "list") return token_list(ctx, rest);
    if (sub == "revoke") return cmd_revoke(ctx, rest);
    throw usage("token: unknown subcommand '" + sub + "' (issue, verify, list, revoke)");
}

}  // namespace kw::keytool
