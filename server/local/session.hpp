#pragma once
// One local-protocol connection's state and the handling of one message.
#include <cstdint>
#include <span>
#include <vector>

#include "core/tokens/token_service.hpp"
#include "core/wire/codec.hpp"
#include "server/app.hpp"

namespace kw::server::local {

class Session {
public:
    explicit Session(App& app) : app_(app) {}

    /// Answers one request message (without its length prefix). Never
    /// throws: every failure becomes a status.
    [[nodiscard]] std::vector<std::uint8_t> handle(std::span<const std::uint8_t> request);

private:
    void hello(wire::Reader& in, wire::Writer& out);
    void list_keys(wire::Writer& out);
    void sign_check(wire::Reader& in, wire::Writer& out);
    void sign(wire::Reader& in, wire::Writer& out);
    void verify(wire::Reader& in, wire::Writer& out);
    void random(wire::Reader& in, wire::Writer& out);

    // The credential, re-checked at most once a second (revocation or
    // suspension of the credential takes effect within that second).
    void require_credential();
    [[nodiscard]] bool may_use(const std::string& key_name) const;
    void require_use(const std::string& key_name) const;
    void take_rate(const std::string& key_name);

    App& app_;
    bool authenticated_ = false;
    core::tokens::Verification credential_;
    std::int64_t checked_at_ms_ = 0;
};

}  // namespace kw::server::local
