// hsm-keytool: the admin's command line for keywarden.
//
//   hsm-keytool [--config PATH] COMMAND [options]
//
// Every failure ends with one line on stderr ("hsm-keytool: ...") and an exit
// code from exit_codes.hpp, so scripts can tell a wrong PIN from an unknown key.
#include <boost/program_options.hpp>
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include "core/error.hpp"
#include "token/error.hpp"
#include "tools/hsm-keytool/commands.hpp"
#include "tools/hsm-keytool/exit_codes.hpp"

namespace {

using kw::keytool::Args;
using kw::keytool::Context;
using Command = int (*)(Context&, const Args&);

struct Entry {
    Command run;
    const char* help;
};

const std::map<std::string, Entry>& commands() {
    using namespace kw::keytool;
    static const std::map<std::string, Entry> table{
        {"init", {cmd_init, "create the root keys in the token (--softhsm DIR: make a SoftHSM token first)"}},
        {"status", {cmd_status, "token, root keys, store and key counts"}},
        {"generate", {cmd_generate, "generate a key in the token: --type T --name N"}},
        {"list", {cmd_list, "list managed keys"}},
        {"show", {cmd_show, "show one key and its versions"}},
        {"public-key", {cmd_public_key, "print a key's public key as PEM"}},
        {"sign", {cmd_sign, "sign stdin or --in FILE with a key"}},
        {"verify", {cmd_verify, "verify a signature: --signature FILE"}},
        {"revoke", {cmd_revoke, "revoke a key: it never signs again"}},
        {"token", {cmd_token, "API and provisioning tokens: issue, verify, list, revoke"}},
        {"suspend", {cmd_suspend, "suspend a key (verify only, reversible)"}},
        {"resume", {cmd_resume, "resume a suspended key"}},
        {"deactivate", {cmd_deactivate, "deactivate a key (verify only)"}},
        {"compromise", {cmd_compromise, "mark a key compromised (nothing, ever)"}},
        {"destroy", {cmd_destroy, "erase a key's material; the record stays (--yes, --force)"}},
        {"audit", {cmd_audit, "audit log: verify, export, tail, query"}},
        {"rotate", {cmd_rotate, "rotate NAME [--strategy S], --due, status, history, stats, rollback"}},
        {"policy", {cmd_policy, "rotation policies: check, apply, list, show, explain"}},
        {"jwt", {cmd_jwt, "sign or verify a JWT with a jwt key"}},
        {"jwks", {cmd_jwks, "print the JWK Set of every published jwt key version"}},
    };
    return table;
}

void usage(std::ostream& os) {
    os << "usage: hsm-keytool [--config PATH] COMMAND [options]\n\ncommands:\n";
    for (const auto& [name, e] : commands()) os << "  " << name << std::string(12 - name.size(), ' ') << e.help << "\n";
    os << "\n`hsm-keytool COMMAND --help` shows a command's options. The PIN comes from\n"
          "$KEYWARDEN_PIN, $KEYWARDEN_PIN_FILE / hsm.pin_file, or a prompt; never from argv.\n";
}

int fail(int code, const std::string& message) {
    std::cerr << "hsm-keytool: " << message << "\n";
    return code;
}

int code_for(const kw::token::Pkcs11Error& e) {
    switch (e.rv()) {
        case CKR_PIN_INCORRECT:
        case CKR_PIN_LOCKED:
        case CKR_PIN_EXPIRED:
        case CKR_PIN_LEN_RANGE:
        case CKR_USER_NOT_LOGGED_IN: return kw::keytool::kAuthFailed;
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_SLOT_ID_INVALID:
        case CKR_DEVICE_REMOVED: return kw::keytool::kTokenNotFound;
        default: return kw::keytool::kFailed;
    }
}

int code_for(const kw::core::Error& e) {
    using K = kw::core::ErrorKind;
    switch (e.kind()) {
        case K::not_found: return kw::keytool::kUnknownKey;
        case K::already_exists: return kw::keytool::kExists;
        case K::invalid_argument: return kw::keytool::kUsage;
        case K::not_permitted: return kw::keytool::kNotPermitted;
        case K::store_locked: return kw::keytool::kStoreLocked;
        case K::store_failure: return kw::keytool::kStoreFailure;
        case K::not_initialized: return kw::keytool::kNotInitialized;
        case K::config: return kw::keytool::kConfig;
        case K::audit_failure: return kw::keytool::kAuditFailure;
    }
    return kw::keytool::kFailed;
}

}  // namespace

int main(int argc, char** argv) {
    Args args(argv + 1, argv + argc);
    std::optional<std::string> config_path;
    while (!args.empty() && (args.front() == "--config" || args.front().rfind("--config=", 0) == 0)) {
        if (args.front() == "--config") {
            if (args.size() < 2) return fail(kw::keytool::kUsage, "--config needs a path");
            config_path = args[1];
            args.erase(args.begin(), args.begin() + 2);
        } else {
            config_path = args.front().substr(9);
            args.erase(args.begin());
        }
    }
    if (args.empty() || args.front() == "--help" || args.front() == "-h" || args.front() == "help") {
        usage(args.empty() ? std::cerr : std::cout);
        return args.empty() ? kw::keytool::kUsage : kw::keytool::kOk;
    }
    const std::string name = args.front();
    args.erase(args.begin());
    auto it = commands().find(name);
    if (it == commands().end()) {
        usage(std::cerr);
        return fail(kw::keytool::kUsage, "unknown command '" + name + "'");
    }
    if (!args.empty() && (args.front() == "--help" || args.front() == "-h")) {
        // Let the command print its own option table.
        try {
            Context ctx(config_path);
            return it->second.run(ctx, {"--help"});
        } catch (const boost::program_options::error&) {
        } catch (...) {
        }
    }
    try {
        Context ctx(config_path);
        return it->second.run(ctx, args);
    } catch (const boost::program_options::error& e) {
        return fail(kw::keytool::kUsage, name + ": " + e.what() + " (see `hsm-keytool " + name + " --help`)");
    } catch (const kw::token::Pkcs11Error& e) {
        std::string hint;
        if (e.rv() == CKR_PIN_INCORRECT) hint = ": wrong PIN";
        if (e.rv() == CKR_PIN_LOCKED) hint = ": PIN locked, the SO must reset it";
        return fail(code_for(e), std::string(e.what()) + hint);
    } catch (const kw::token::TokenError& e) {
        using K = kw::token::TokenErrorKind;
        int code = e.kind() == K::pin_unavailable ? kw::keytool::kAuthFailed
                   : e.kind() == K::bad_argument  ? kw::keytool::kUsage
                                                  : kw::keytool::kTokenNotFound;
        return fail(code, e.what());
    } catch (const kw::core::Error& e) {
        return fail(code_for(e), e.what());
    } catch (const std::exception& e) {
        return fail(kw::keytool::kFailed, e.what());
    }
}
