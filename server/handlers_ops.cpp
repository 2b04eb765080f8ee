// GET /metrics, /healthz, /readyz
#include "core/error.hpp"
#include "server/app.hpp"

namespace kw::server {

Response metrics(App& app, const Request&) {
    Response r{200, "text/plain; version=0.0.4", app.metrics.render(), {}};
    return r;
}

Response healthz(App& app, const Request&) {
    return Response::json({{"status", app.draining.load() ? "draining" : "ok"}});
}

Response readyz(App& app, const Request&) {
    nlohmann::json checks;
    bool ready = !app.draining.load();
    try {
        // The token itself is asked: a token removed, reset or logged out
        // under the daemon must not pass for ready.
        const bool logged_in = app.token.session_logged_in();
        checks["token_logged_in"] = logged_in;
        ready = ready && logged_in;
    } catch (const std::exception& e) {
        checks["token_logged_in"] = false;
        checks["token"] = e.what();
        ready = false;
    }
    try {
        // A write, not a read: a store that can be read but not written
        // (read-only file, another process holding the write lock past
        // busy_timeout_ms, a full disk) cannot serve audited requests.
        app.store.set_meta("readyz_probe", std::to_string(app.keys.clock().now()));
        checks["store"] = "ok";
    } catch (const std::exception& e) {
        checks["store"] = e.what();
        ready = false;
    }
    checks["audit_queue_depth"] = app.audit.queue_depth();
    if (const std::string why = app.audit.write_error(); why.empty()) {
        checks["audit"] = "ok";
    } else {
        checks["audit"] = why;  // every audited operation is refused meanwhile
        ready = false;
    }
    return Response::json({{"ready", ready}, {"checks", checks}}, ready ? 200 : 503);
}

}  // namespace kw::server
