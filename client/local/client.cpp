#include "client/local/client.hpp"

#include <unistd.h>

namespace kw::client {
namespace {

// Connections kept idle beyond this are closed: the daemon keeps a thread
// per connection.
constexpr std::size_t kMaxIdle = 16;

wire::Reader checked(const std::vector<std::uint8_t>& answer) {
    wire::Reader r(answer);
    const auto status = static_cast<wire::Status>(r.u16());
    if (status != wire::Status::ok) {
        std::string message;
        try {
            message = r.str();
        } catch (const wire::WireError&) {
        }
        throw RefusedError(status, message);
    }
    return r;
}

}  // namespace

LocalClient::LocalClient(std::string socket_path, std::string client_name)
    : socket_path_(std::move(socket_path)), client_name_(std::move(client_name)), pid_(::getpid()) {}

LocalClient::~LocalClient() = default;

std::unique_ptr<Connection> LocalClient::checkout() {
    {
        std::lock_guard lock(mutex_);
        if (pid_ != ::getpid()) {
            // A forked child: the idle connections are shared with the parent
            // (one socket, two processes), so drop them without a word on them.
            for (auto& c : idle_) c->abandon();
            idle_.clear();
            pid_ = ::getpid();
        }
        if (!idle_.empty()) {
            auto c = std::move(idle_.back());
            idle_.pop_back();
            return c;
        }
    }
    auto c = std::make_unique<Connection>(socket_path_);
    (void)hello(*c);
    return c;
}

void LocalClient::checkin(std::unique_ptr<Connection> c) {
    std::lock_guard lock(mutex_);
    if (pid_ == ::getpid() && idle_.size() < kMaxIdle && !credential_.empty()) idle_.push_back(std::move(c));
}

std::optional<Identity> LocalClient::hello(Connection& c) {
    wire::Writer w;
    {
        std::lock_guard lock(mutex_);
        if (credential_.empty()) return std::nullopt;  // unauthenticated connections still serve ping
        w.u8(static_cast<std::uint8_t>(wire::Op::hello)).u16(wire::kProtocolVersion);
        w.str(credential_.view()).str(client_name_);
    }
    // The request holds the credential: wiped however the call ends.
    struct Wipe {
        std::vector<std::uint8_t>& b;
        ~Wipe() { token::secure_wipe(b.data(), b.size()); }
    } wipe{w.buffer()};
    auto answer = c.call(w.buffer());
    auto r = checked(answer);
    Identity id;
    id.name = r.str();
    id.kid = r.str();
    id.expires_at = r.u64();
    return id;
}

wire::Reader LocalClient::call(const wire::Writer& request, std::vector<std::uint8_t>& answer) {
    for (int attempt = 0;; ++attempt) {
        auto c = checkout();
        try {
            answer = c->call(request.buffer());
        } catch (const ConnectionError&) {
            // A pooled connection may be stale (daemon restarted): one retry
            // on a fresh connection, then report.
            if (attempt == 0) continue;
            throw;
        }
        checkin(std::move(c));
        return checked(answer);
    }
}

Identity LocalClient::login(std::string_view credential) {
    // What the daemon answers an empty credential (malformed, never audited).
    if (credential.empty()) throw RefusedError(wire::Status::auth_failed, "credential refused: MALFORMED");
    {
        std::lock_guard lock(mutex_);
        credential_ = token::SecretString(std::string(credential));
        idle_.clear();
    }
    forget_checks();  // another credential may use other keys
    try {
        auto c = std::make_unique<Connection>(socket_path_);
        auto id = hello(*c);
        if (!id) throw RefusedError(wire::Status::not_authenticated, "logged out while logging in");
        checkin(std::move(c));
        return *id;
    } catch (...) {
        std::lock_guard lock(mutex_);
        credential_.wipe();
        throw;
    }
}

void LocalClient::logout() {
    {
        std::lock_guard lock(mutex_);
        credential_.wipe();
        idle_.clear();
    }
    forget_checks();
}

bool LocalClient::logged_in() const {
    std::lock_guard lock(mutex_);
    return !credential_.empty();
}

std::vector<KeyInfo> LocalClient::list_keys() {
    wire::Writer w;
    w.u8(static_cast<std::uint8_t>(wire::Op::list_keys));
    std::vector<std::uint8_t> answer;
    auto r = call(w, answer);
    std::vector<KeyInfo> keys(r.u32());
    for (auto& k : keys) {
        k.name = r.str();
        k.type = r.str();
        k.family = static_cast<wire::Family>(r.u8());
        k.secret_bits = r.u32();
        k.can_sign = r.u8() != 0;
        k.signing_kid = r.str();
        k.versions.resize(r.u32());
        for (auto& v : k.versions) {
            v.kid = r.str();
            v.can_verify = r.u8() != 0;
            auto spki = r.bytes();
            v.spki.assign(spki.begin(), spki.end());
        }
    }
    r.finish();
    return keys;
}

void LocalClient::heard(std::uint64_t generation) {
    std::lock_guard lock(checks_mutex_);
    last_generation_ = generation;
    last_heard_ = std::chrono::steady_clock::now();
}

void LocalClient::forget_checks() {
    std::lock_guard lock(checks_mutex_);
    checked_.clear();
}

bool LocalClient::recently_checked(const std::string& key, wire::Mechanism mechanism) const {
    std::lock_guard lock(checks_mutex_);
    const auto it = checked_.find({key, static_cast<std::uint8_t>(mechanism)});
    return it != checked_.end() && it->second == last_generation_ &&
           std::chrono::steady_clock::now() - last_heard_ < kCheckFresh;
}

SignCheck LocalClient::sign_check(const std::string& key, wire::Mechanism mechanism) {
    wire::Writer w;
    w.u8(static_cast<std::uint8_t>(wire::Op::sign_check)).str(key).u8(static_cast<std::uint8_t>(mechanism));
    std::vector<std::uint8_t> answer;
    SignCheck c;
    try {
        auto r = call(w, answer);
        c.kid = r.str();
        c.generation = r.u64();
        r.finish();
    } catch (...) {
        forget_checks();  // whatever changed, check again next time
        throw;
    }
    heard(c.generation);
    std::lock_guard lock(checks_mutex_);
    checked_[{key, static_cast<std::uint8_t>(mechanism)}] = c.generation;
    return c;
}

Signature LocalClient::sign(const std::string& key, wire::Mechanism mechanism, std::span<const std::uint8_t> data) {
    wire::Writer w;
    w.u8(static_cast<std::uint8_t>(wire::Op::sign)).str(key).u8(static_cast<std::uint8_t>(mechanism)).bytes(data);
    std::vector<std::uint8_t> answer;
    Signature s;
    try {
        auto r = call(w, answer);
        s.kid = r.str();
        auto sig = r.bytes();
        s.bytes.assign(sig.begin(), sig.end());
        s.generation = r.u64();
        r.finish();
    } catch (...) {
        forget_checks();
        throw;
    }
    heard(s.generation);
    return s;
}

bool LocalClient::verify(const std::string& key, const std::string& kid, wire::Mechanism mechanism,
                         std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature) {
    wire::Writer w;
    w.u8(static_cast<std::uint8_t>(wire::Op::verify)).str(key).str(kid).u8(static_cast<std::uint8_t>(mechanism));
    w.bytes(data).bytes(signature);
    std::vector<std::uint8_t> answer;
    auto r = call(w, answer);
    return r.u8() != 0;
}

std::vector<std::uint8_t> LocalClient::random(std::size_t n) {
    wire::Writer w;
    w.u8(static_cast<std::uint8_t>(wire::Op::random)).u32(static_cast<std::uint32_t>(n));
    std::vector<std::uint8_t> answer;
    auto r = call(w, answer);
    auto b = r.bytes();
    return {b.begin(), b.end()};
}

void LocalClient::ping() {
    wire::Writer w;
    w.u8(static_cast<std::uint8_t>(wire::Op::ping));
    std::vector<std::uint8_t> answer;
    (void)call(w, answer);
}

}  // namespace kw::client
