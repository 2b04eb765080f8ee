// jwt sign | verify, and jwks
#include <iostream>

#include "core/error.hpp"
#include "core/jwt/jwt.hpp"
#include "tools/hsm-keytool/commands.hpp"
#include "tools/hsm-keytool/exit_codes.hpp"
#include "tools/hsm-keytool/io.hpp"
#include "tools/hsm-keytool/options.hpp"

namespace kw::keytool {
namespace {

core::Error usage(const std::string& what) {
    return core::Error(core::ErrorKind::invalid_argument, what);
}

int jwt_sign(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool jwt sign NAME --claims FILE [--ttl D] [--caller ID]");
    desc.add_options()("name", po::value<std::string>()->required(), "jwt key name")(
        "claims", po::value<std::string>()->required(), "JSON object of claims (- for stdin)")(
        "ttl", po::value<std::string>()->default_value("1h"), "exp = iat + ttl unless the claims set exp")(
        "caller", po::value<std::string>(), "caller id (GRADUAL rotations pick the version by it)");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    auto raw = read_input(vm["claims"].as<std::string>());
    core::jwt::SignRequest r;
    r.claims = nlohmann::json::parse(raw.begin(), raw.end(), nullptr, false);
    if (r.claims.is_discarded() || !r.claims.is_object()) throw usage("--claims must hold one JSON object");
    auto ttl = core::parse_duration(vm["ttl"].as<std::string>());
    if (!ttl) throw usage("--ttl wants a duration like 15m or 1h");
    r.ttl = *ttl;
    if (vm.count("caller")) r.caller = vm["caller"].as<std::string>();
    std::cout << core::jwt::sign(ctx.keys(), vm["name"].as<std::string>(), r) << "\n";
    return kOk;
}

int jwt_verify(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool jwt verify NAME [--in FILE] [--leeway S] [--json]  (JWT on stdin)");
    desc.add_options()("name", po::value<std::string>()->required(), "jwt key name")("in", po::value<std::string>(),
                                                                                     "read the JWT from FILE")(
        "leeway", po::value<long long>()->default_value(0), "seconds of clock skew allowed for exp/nbf")("json",
                                                                                                         "print JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    auto raw = read_input(vm.count("in") ? std::optional<std::string>(vm["in"].as<std::string>()) : std::nullopt);
    std::string token(raw.begin(), raw.end());
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
    auto v = core::jwt::verify(ctx.keys(), vm["name"].as<std::string>(), token, vm["leeway"].as<long long>());
    if (vm.count("json")) {
        std::cout << nlohmann::json{{"valid", v.valid},
                                    {"reason", v.reason},
                                    {"kid", v.kid},
                                    {"claims", v.valid ? v.claims : nlohmann::json(nullptr)}}
                         .dump(2)
                  << "\n";
    } else if (v.valid) {
        std::cout << "JWT valid (kid " << v.kid << ")\n" << v.claims.dump(2) << "\n";
    } else {
        std::cout << "JWT INVALID: " << v.reason << "\n";
    }
    return v.valid ? kOk : kInvalid;
}

}  // namespace

int cmd_jwt(Context& ctx, const Args& args) {
    if (args.empty()) throw usage("jwt: say sign or verify");
    Args rest(args.begin() + 1, args.end());
    if (args.front() == "sign") return jwt_sign(ctx, rest);
    if (args.front() == "verify") return jwt_verify(ctx, rest);
    throw usage("jwt: unknown subcommand '" + args.front() + "' (sign, verify)");
}

int cmd_jwks(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool jwks [--out FILE]");
    desc.add_options()("out", po::value<std::string>(), "write the JWK Set to FILE");
    auto vm = parse(args, desc);
    std::string text = core::jwt::jwks(ctx.keys()).dump(2) + "\n";
    std::optional<std::string> out;
    if (vm.count("out")) out = vm["out"].as<std::string>();
    write_output(out, std::vector<std::uint8_t>(text.begin(), text.end()));
    return kOk;
}

}  // namespace kw::keytool
