#include "token/token.hpp"

#include "token/error.hpp"

namespace kw::token {

namespace {
std::string resolve_module(const std::string& path) {
    if (!path.empty()) return path;
    std::string found = default_module_path();
    if (found.empty()) {
        throw TokenError(TokenErrorKind::module_load,
                         "no PKCS#11 module configured and SoftHSM is not installed (apt-get install softhsm2)");
    }
    return found;
}
}  // namespace

Token::Token(const TokenConfig& config)
    : module_(std::make_unique<Module>(resolve_module(config.module_path), config.locking)),
      info_(find_token(*module_, config.selector)),
      pool_(std::make_unique<SessionPool>(*module_, info_.slot, config.sessions)) {}

Token::~Token() {
    // Sessions must close before the module finalises.
    pool_.reset();
    module_.reset();
}

void Token::login(SecretString pin) {
    auto lease = pool_->lease();
    CK_RV rv = module_->fn()->C_Login(lease->handle(), CKU_USER,
                                      reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.view().data())),
                                      pin.view().size());
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) throw Pkcs11Error("C_Login", rv);
    pin_ = std::move(pin);
    logged_in_ = true;
}

bool Token::session_logged_in() {
    auto lease = session();
    CK_SESSION_INFO info{};
    check("C_GetSessionInfo", module_->fn()->C_GetSessionInfo(lease->handle(), &info));
    return info.state == CKS_RO_USER_FUNCTIONS || info.state == CKS_RW_USER_FUNCTIONS;
}

SessionPool::Lease Token::session() {
    if (module_->forked()) recover_after_fork();
    leases_.fetch_add(1, std::memory_order_relaxed);
    return pool_->lease();
}

void Token::recover_after_fork() {
    std::lock_guard lock(fork_mutex_);
    if (!module_->forked()) return;  // another thread already did it
    module_->reinitialize();
    // The slot id may differ in the child's fresh library state: find the
    // token again by serial, which is stable.
    TokenSelector by_serial;
    by_serial.serial = info_.serial;
    info_ = find_token(*module_, by_serial);
    pool_->rebuild_after_fork(*module_, info_.slot);
    generation_.fetch_add(1);
    if (logged_in_) {
        auto lease = pool_->lease();
        CK_RV rv = module_->fn()->C_Login(lease->handle(), CKU_USER,
                                          reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin_.view().data())),
                                          pin_.view().size());
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) throw Pkcs11Error("C_Login", rv);
    }
}

}  // namespace kw::token
