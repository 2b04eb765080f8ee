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
    checks["token_logged_in"] = app.token.logged_in();
    ready = ready && app.token.logged_in();
    try {
        (void)app.store.get_meta("readyz");
        checks["store"] = "ok";
    } catch (const std::exception& e) {
        checks["store"] = e.what();
        ready = false;
    }
    checks["audit_queue_depth"] = app.audit.queue_depth();
    if (const std::string why = app.audit.store_error(); why.empty()) {
        checks["audit"] = "ok";
    } else {
        checks["audit"] = why;  // every audited operation is refused meanwhile
        ready = false;
    }
    return Response::json({{"ready", ready}, {"checks", checks}}, ready ? 200 : 503);
}

}  // namespace kw::server
