// sign and verify.
#include <iostream>

#include "core/encoding.hpp"
#include "core/error.hpp"
#include "tools/hsm-keytool/commands.hpp"
#include "tools/hsm-keytool/exit_codes.hpp"
#include "tools/hsm-keytool/io.hpp"
#include "tools/hsm-keytool/options.hpp"

namespace kw::keytool {
namespace {

void add_format_options(po::options_description& desc) {
    desc.add_options()("pss", "RSA: PSS padding (default PKCS#1 v1.5)")(
        "raw", "ECDSA: raw r||s signature (default DER, as openssl wants)")("base64", "signature as base64 text");
}

core::SignOptions sign_options(const po::variables_map& vm) {
    core::SignOptions o;
    if (vm.count("pss")) o.rsa_padding = core::RsaPadding::pss;
    if (vm.count("raw")) o.format = core::SignatureFormat::raw;
    return o;
}

std::optional<std::string> opt(const po::variables_map& vm, const char* name) {
    if (vm.count(name)) return vm[name].as<std::string>();
    return std::nullopt;
}

}  // namespace

int cmd_sign(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool sign NAME [--in FILE] [--out FILE] [--base64] [--pss] [--raw] [--json]");
    desc.add_options()("name", po::value<std::string>()->required(), "key name")(
        "in", po::value<std::string>(), "data to sign (default: stdin)")("out", po::value<std::string>(),
                                                                         "signature file (default: stdout)")(
        "json", "print {kid, version, mechanism, signature (base64)}");
    add_format_options(desc);
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    auto data = read_input(opt(vm, "in"));
    auto result = ctx.keys().sign(vm["name"].as<std::string>(), data, sign_options(vm));
    if (vm.count("json")) {
        std::cout << nlohmann::json{{"kid", result.kid},
                                    {"version", result.version},
                                    {"mechanism", token::to_string(result.mechanism)},
                                    {"signature", core::to_base64(result.signature)}}
                         .dump(2)
                  << "\n";
        return kOk;
    }
    if (vm.count("base64")) {
        std::string text = core::to_base64(result.signature) + "\n";
        write_output(opt(vm, "out"), std::vector<std::uint8_t>(text.begin(), text.end()));
    } else {
        write_output(opt(vm, "out"), result.signature);
    }
    return kOk;
}

int cmd_verify(Context& ctx, const Args& args) {
    po::options_description desc(
        "hsm-keytool verify NAME --signature FILE [--in FILE] [--kid KID] [--base64] [--json]");
    desc.add_options()("name", po::value<std::string>()->required(), "key name")(
        "signature", po::value<std::string>()->required(), "signature file")("in", po::value<std::string>(),
                                                                             "signed data (default: stdin)")(
        "kid", po::value<std::string>(), "check only this version")("json", "print {valid, kid}");
    add_format_options(desc);
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    auto sig = read_input(opt(vm, "signature"));
    if (vm.count("base64")) {
        auto decoded = core::from_base64(std::string(sig.begin(), sig.end()));
        if (!decoded) throw core::Error(core::ErrorKind::invalid_argument, "signature file is not valid base64");
        sig = std::move(*decoded);
    }
    auto data = read_input(opt(vm, "in"));
    auto kid = opt(vm, "kid");
    auto result = ctx.keys().verify(vm["name"].as<std::string>(), data, sig, sign_options(vm),
                                    kid ? std::optional<std::string_view>(*kid) : std::nullopt);
    if (vm.count("json")) {
        std::cout << nlohmann::json{{"valid", result.valid},
                                    {"kid", result.valid ? nlohmann::json(result.kid) : nlohmann::json(nullptr)}}
                         .dump(2)
                  << "\n";
    } else if (result.valid) {
        std::cout << "signature valid (version " << result.kid << ")\n";
    } else {
        std::cerr << "signature INVALID\n";
    }
    return result.valid ? kOk : kInvalid;
}

}  // namespace kw::keytool
