// Operations refused because their audit event could not be written (fail
// closed) raise audit_failure, from the HTTP API and the local protocol
// alike. While the store is down every audited request fails, so the alert
// goes out at most once a minute, saying how many refusals it stands for;
// the metric counts each one.
#include "server/app.hpp"

namespace kw::server {

void note_audit_failure(App& app, const std::string& why) {
    app.metrics.inc("keywarden_audit_failures_total");
    const std::int64_t now = app.keys.clock().now();
    const std::int64_t refused = app.audit_failures.since_alert.fetch_add(1) + 1;
    std::int64_t last = app.audit_failures.last_alert.load();
    if (now - last < 60 || !app.audit_failures.last_alert.compare_exchange_strong(last, now)) return;
    app.audit_failures.since_alert.fetch_sub(refused);
    app.alerts.notify("audit_failure", "", why, {{"refused", refused}});
}

}  // namespace kw::server
