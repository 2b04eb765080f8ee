// generate, list, show, public-key, revoke.
#include <iomanip>
#include <iostream>

#include "core/encoding.hpp"
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

void print_key(const core::ManagedKey& key, core::UnixTime now) {
    std::cout << "name:       " << key.name << "\n"
              << "id:         " << key.id << "\n"
              << "type:       " << core::to_string(key.type) << " (" << algorithm_text(key) << ")\n"
              << "status:     " << key_status(key, now) << "\n"
              << "scopes:     ";
    for (std::size_t i = 0; i < key.scopes.size(); ++i) std::cout << (i ? "," : "") << key.scopes[i];
    std::cout << (key.scopes.empty() ? "-" : "") << "\n";
    if (!key.owner.empty()) std::cout << "owner:      " << key.owner << "\n";
    for (const auto& [k, v] : key.labels) std::cout << "label:      " << k << "=" << v << "\n";
    std::cout << "created:    " << core::format_time(key.created_at) << "\n"
              << "expires:    " << (key.expires_at ? core::format_time(*key.expires_at) : "never") << "\n";
    if (key.revoked_at) std::cout << "revoked:    " << core::format_time(*key.revoked_at) << "\n";
    std::cout << "versions:\n";
    for (const auto& v : key.versions) {
        std::cout << "  v" << v.version << "  kid " << v.kid << "  " << std::left << std::setw(11)
                  << core::to_string(v.state) << " " << std::setw(8) << core::to_string(v.residency)
                  << (v.primary ? " primary" : "") << "  created " << core::format_time(v.created_at) << "\n";
    }
}

}  // namespace

int cmd_generate(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool generate --type T --name N [options]");
    std::vector<std::string> scopes;
    std::vector<std::string> labels;
    desc.add_options()("type", po::value<std::string>()->required(), "hmac | rsa | ecdsa | ed25519 | jwt")(
        "name", po::value<std::string>()->required(), "unique key name")(
        "size", po::value<unsigned>(), "RSA modulus bits (2048, 3072, 4096) or HMAC secret bits (256, 384, 512)")(
        "curve", po::value<std::string>(), "ECDSA curve: P-256 (default), P-384")(
        "alg", po::value<std::string>(), "JWT alg: HS256, RS256, PS256, ES256 (default), EdDSA")(
        "scope", po::value(&scopes)->composing(), "scope (repeat or comma-separate)")(
        "owner", po::value<std::string>(), "owning team or service")("label", po::value(&labels)->composing(),
                                                                     "label key=value (repeatable)")(
        "expires-in", po::value<std::string>(), "lifetime: 90d, 12h, 3600")(
        "residency", po::value<std::string>(), "wrapped (default) or token")("json", "print the key as JSON");
    auto vm = parse(args, desc);

    core::GenerateRequest r;
    r.name = vm["name"].as<std::string>();
    auto type = core::parse_key_type(vm["type"].as<std::string>());
    if (!type) throw usage("unknown key type '" + vm["type"].as<std::string>() + "' (hmac, rsa, ecdsa, ed25519, jwt)");
    r.type = *type;
    if (vm.count("size")) {
        if (r.type == core::KeyType::hmac) {
            r.hmac_bits = vm["size"].as<unsigned>();
        } else if (r.type != core::KeyType::rsa && r.type != core::KeyType::jwt) {
            throw usage("--size applies to rsa and hmac keys only");
        } else {
            r.rsa_bits = vm["size"].as<unsigned>();
        }
    }
    if (vm.count("curve")) {
        if (r.type != core::KeyType::ecdsa) throw usage("--curve applies to ecdsa keys only");
        r.curve = core::parse_curve(vm["curve"].as<std::string>());
        if (!r.curve) throw usage("unknown curve '" + vm["curve"].as<std::string>() + "' (P-256, P-384)");
    }
    if (vm.count("alg")) {
        if (r.type != core::KeyType::jwt) throw usage("--alg applies to jwt keys only");
        r.jwt_alg = core::parse_jwt_alg(vm["alg"].as<std::string>());
        if (!r.jwt_alg)
            throw usage("unknown JWT alg '" + vm["alg"].as<std::string>() + "' (HS256, RS256, PS256, ES256, EdDSA)");
    }
    r.scopes = split_scopes(scopes);
    if (vm.count("owner")) r.owner = vm["owner"].as<std::string>();
    for (const auto& l : labels) {
        auto eq = l.find('=');
        if (eq == std::string::npos || eq == 0) throw usage("--label wants key=value, got '" + l + "'");
        r.labels[l.substr(0, eq)] = l.substr(eq + 1);
    }
    if (vm.count("expires-in")) {
        r.expires_in = core::parse_duration(vm["expires-in"].as<std::string>());
        if (!r.expires_in || *r.expires_in == 0) throw usage("--expires-in wants a duration like 90d, 12h or 3600");
    }
    r.residency = ctx.config().default_residency;
    if (vm.count("residency")) {
        auto res = core::parse_residency(vm["residency"].as<std::string>());
        if (!res) throw usage("--residency must be wrapped or token");
        r.residency = *res;
        r.allow_token_fallback = false;
    }
    core::ManagedKey key = ctx.keys().generate(r);
    if (vm.count("json")) {
        std::cout << key_json(key).dump(2) << "\n";
    } else {
        std::cout << "generated " << key.name << " (" << algorithm_text(key) << ", "
                  << core::to_string(key.versions.front().residency) << ", kid " << key.versions.front().kid << ")\n";
    }
    return kOk;
}

int cmd_list(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool list [--type T] [--json]");
    desc.add_options()("type", po::value<std::string>(), "only keys of this type")("json", "print JSON");
    auto vm = parse(args, desc);
    std::optional<core::KeyType> only;
    if (vm.count("type")) {
        only = core::parse_key_type(vm["type"].as<std::string>());
        if (!only) throw usage("unknown key type '" + vm["type"].as<std::string>() + "'");
    }
    auto keys = ctx.keys().list();
    const auto now = ctx.clock().now();
    if (vm.count("json")) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& k : keys) {
            if (!only || k.type == *only) {
                auto j = key_json(k);
                j["status"] = key_status(k, now);
                arr.push_back(j);
            }
        }
        std::cout << arr.dump(2) << "\n";
        return kOk;
    }
    std::cout << std::left << std::setw(28) << "NAME" << std::setw(14) << "TYPE" << std::setw(16) << "ALGORITHM"
              << std::setw(12) << "STATUS" << std::setw(5) << "VER" << std::setw(15) << "PRIMARY KID"
              << "EXPIRES\n";
    int shown = 0;
    for (const auto& k : keys) {
        if (only && k.type != *only) continue;
        const auto* p = k.primary();
        std::cout << std::setw(28) << k.name << std::setw(14) << core::to_string(k.type) << std::setw(16)
                  << algorithm_text(k) << std::setw(12) << key_status(k, now) << std::setw(5) << k.versions.size()
                  << std::setw(15) << (p ? p->kid : "-") << (k.expires_at ? core::format_time(*k.expires_at) : "never")
                  << "\n";
        ++shown;
    }
    std::cout << shown << " key" << (shown == 1 ? "" : "s") << "\n";
    return kOk;
}

int cmd_show(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool show NAME [--json]");
    desc.add_options()("name", po::value<std::string>()->required(), "key name")("json", "print JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    core::ManagedKey key = ctx.keys().describe(vm["name"].as<std::string>());
    if (vm.count("json")) {
        auto j = key_json(key);
        j["status"] = key_status(key, ctx.clock().now());
        std::cout << j.dump(2) << "\n";
    } else {
        print_key(key, ctx.clock().now());
    }
    return kOk;
}

int cmd_public_key(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool public-key NAME [--kid KID] [--out FILE] [--json]");
    desc.add_options()("name", po::value<std::string>()->required(), "key name")(
        "kid", po::value<std::string>(), "a specific version (default: primary)")(
        "out", po::value<std::string>(), "write PEM to FILE")("json", "print {name, kid, pem} as JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    const auto name = vm["name"].as<std::string>();
    std::optional<std::string> kid;
    if (vm.count("kid")) kid = vm["kid"].as<std::string>();
    std::string pem = ctx.keys().public_key_pem(name, kid ? std::optional<std::string_view>(*kid) : std::nullopt);
    if (vm.count("json")) {
        auto key = ctx.keys().get(name);
        std::cout << nlohmann::json{{"name", name}, {"kid", kid ? *kid : key.primary()->kid}, {"pem", pem}}.dump(2)
                  << "\n";
        return kOk;
    }
    std::optional<std::string> out;
    if (vm.count("out")) out = vm["out"].as<std::string>();
    write_output(out, std::vector<std::uint8_t>(pem.begin(), pem.end()));
    return kOk;
}

int cmd_revoke(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool revoke NAME [--json]");
    desc.add_options()("name", po::value<std::string>()->required(), "key name")("json", "print the key as JSON");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse(args, desc, pos);
    const auto name = vm["name"].as<std::string>();
    ctx.keys().revoke(name);
    if (vm.count("json")) {
        std::cout << key_json(ctx.keys().get(name)).dump(2) << "\n";
    } else {
        std::cout << "revoked " << name << ": it signs nothing from now on; existing signatures still verify\n";
    }
    return kOk;
}

}  // namespace kw::keytool
