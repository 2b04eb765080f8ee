#include "tools/hsm-keytool/context.hpp"

#include "token/pin.hpp"

namespace kw::keytool {

Context::Context(std::optional<std::string> config_path)
    : config_path_(std::move(config_path)), config_(core::load_config(config_path_)) {}

Context::~Context() {
    keys_.reset();
    store_.reset();
    token_.reset();
}

token::Token& Context::token() {
    if (!token_) {
        token::TokenConfig tc;
        tc.module_path = config_.hsm_module;
        tc.selector.label = config_.token_label;
        tc.selector.serial = config_.token_serial;
        tc.selector.uri = config_.token_uri;
        tc.sessions = config_.sessions;
        token_ = std::make_unique<token::Token>(tc);
    }
    return *token_;
}

token::Token& Context::logged_in_token() {
    token::Token& t = token();
    if (!t.logged_in()) {
        token::PinSource source;
        source.env_var = config_.pin_env;
        source.file = config_.pin_file;
        source.allow_prompt = true;
        t.login(token::read_pin(source));
    }
    return t;
}

core::Store& Context::store() {
    if (!store_) store_ = core::open_store(config_.store_url, core::StoreOptions{config_.busy_timeout_ms});
    return *store_;
}

const core::RootKeys& Context::roots() {
    if (!roots_) roots_ = core::load_root_keys(logged_in_token());
    return *roots_;
}

core::KeyService& Context::keys() {
    if (!keys_) {
        const auto& r = roots();
        keys_ = std::make_unique<core::KeyService>(logged_in_token(), store(), r, clock_, config_.handle_cache_size);
    }
    return *keys_;
}

}  // namespace kw::keytool
