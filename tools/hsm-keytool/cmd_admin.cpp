// init and status.
#include <spawn.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "token/error.hpp"
#include "tools/hsm-keytool/commands.hpp"
#include "tools/hsm-keytool/exit_codes.hpp"
#include "tools/hsm-keytool/options.hpp"

extern char** environ;

namespace kw::keytool {
namespace {

std::string make_token_script() {
    if (const char* s = std::getenv("KEYWARDEN_MAKE_TOKEN"); s != nullptr && *s != '\0') return s;
    for (const char* candidate :
         {KW_SOURCE_DIR "/softhsm-conf/make-token.sh", KW_DATA_DIR "/softhsm-conf/make-token.sh"}) {
        if (std::filesystem::exists(candidate)) return candidate;
    }
    throw core::Error(core::ErrorKind::config, "cannot find softhsm-conf/make-token.sh (set KEYWARDEN_MAKE_TOKEN)");
}

// Runs make-token.sh DIR. PINs travel in the environment, never in argv.
void create_softhsm_token(const std::string& dir) {
    std::string script = make_token_script();
    std::vector<char*> argv{const_cast<char*>("/bin/bash"), script.data(), const_cast<char*>(dir.c_str()), nullptr};
    pid_t pid = 0;
    if (posix_spawn(&pid, "/bin/bash", nullptr, nullptr, argv.data(), environ) != 0) {
        throw core::Error(core::ErrorKind::config, "cannot run " + script);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw core::Error(core::ErrorKind::config, "make-token.sh failed for " + dir);
    }
    // Adopt the new token for the rest of this run.
    std::ifstream env(dir + "/env");
    std::string line;
    while (std::getline(env, line)) {
        const std::string prefix = "export ";
        if (line.rfind(prefix, 0) != 0) continue;
        auto eq = line.find('=');
        std::string name = line.substr(prefix.size(), eq - prefix.size());
        std::string value = line.substr(eq + 1);
        if (value.size() >= 2 && value.front() == '\'') value = value.substr(1, value.size() - 2);
        setenv(name.c_str(), value.c_str(), 1);
    }
}

}  // namespace

int cmd_init(Context& ctx_in, const Args& args) {
    po::options_description desc("hsm-keytool init [--softhsm DIR] [--json]");
    desc.add_options()("softhsm", po::value<std::string>(), "first create a fresh SoftHSM token in DIR")("json",
                                                                                                         "print JSON");
    auto vm = parse(args, desc);
    std::optional<Context> fresh;
    Context* ctx = &ctx_in;
    if (vm.count("softhsm")) {
        create_softhsm_token(vm["softhsm"].as<std::string>());
        fresh.emplace(ctx_in.config_path());  // re-read config: the environment now names the new token
        ctx = &*fresh;
    }
    auto created = core::init_root_keys(ctx->logged_in_token());
    (void)ctx->store();  // creates and migrates the store
    if (vm.count("json")) {
        std::cout << nlohmann::json{{"token", ctx->token().info().label},
                                    {"serial", ctx->token().info().serial},
                                    {"created", created},
                                    {"store", ctx->config().store_url}}
                         .dump(2)
                  << "\n";
        return kOk;
    }
    std::cout << "token '" << ctx->token().info().label << "' (serial " << ctx->token().info().serial << ")\n";
    if (created.empty()) std::cout << "root keys already present; nothing created\n";
    for (const auto& label : created) std::cout << "created " << label << "\n";
    std::cout << "store ready: " << ctx->config().store_url << "\n";
    if (vm.count("softhsm")) {
        std::cout << "to use this token: source " << vm["softhsm"].as<std::string>() << "/env\n";
    }
    return kOk;
}

int cmd_status(Context& ctx, const Args& args) {
    po::options_description desc("hsm-keytool status [--json]");
    desc.add_options()("json", "print JSON");
    auto vm = parse(args, desc);
    auto& token = ctx.logged_in_token();
    const auto& info = token.info();
    nlohmann::json j;
    j["token"] = {{"label", info.label},
                  {"serial", info.serial},
                  {"manufacturer", info.manufacturer},
                  {"model", info.model},
                  {"module", token.module().path()},
                  {"logged_in", token.logged_in()},
                  {"sessions", ctx.config().sessions}};
    bool initialized = true;
    try {
        const auto& roots = ctx.roots();
        j["root_keys"] = {{"initialized", true}, {"pepper_versions", roots.peppers.size()}};
    } catch (const core::Error& e) {
        if (e.kind() != core::ErrorKind::not_initialized) throw;
        initialized = false;
        j["root_keys"] = {{"initialized", false}};
    }
    auto stats = ctx.store().stats();
    j["store"] = {{"backend", stats.backend},
                  {"location", stats.location},
                  {"schema_version", stats.schema_version},
                  {"keys_total", stats.keys_total},
                  {"keys_by_type", stats.keys_by_type},
                  {"versions_by_state", stats.versions_by_state}};
    j["config"] = ctx.config().source;
    if (vm.count("json")) {
        std::cout << j.dump(2) << "\n";
        return initialized ? kOk : kNotInitialized;
    }
    std::cout << "token:     " << info.label << " (serial " << info.serial << ", " << info.manufacturer << " "
              << info.model << ")\n"
              << "module:    " << token.module().path() << "\n"
              << "login:     ok\n"
              << "root keys: " << (initialized ? "present" : "MISSING: run `hsm-keytool init`") << "\n"
              << "store:     " << stats.backend << " " << stats.location << " (schema " << stats.schema_version << ")\n"
              << "keys:      " << stats.keys_total;
    if (!stats.keys_by_type.empty()) {
        std::cout << " (";
        bool first = true;
        for (const auto& [type, n] : stats.keys_by_type) {
            std::cout << (first ? "" : ", ") << n << " " << type;
            first = false;
        }
        std::cout << ")";
    }
    std::cout << "\nversions:  ";
    bool first = true;
    for (const auto& [state, n] : stats.versions_by_state) {
        std::cout << (first ? "" : ", ") << n << " " << state;
        first = false;
    }
    std::cout << (first ? "none" : "") << "\nconfig:    " << ctx.config().source << "\n";
    return initialized ? kOk : kNotInitialized;
}

}  // namespace kw::keytool
