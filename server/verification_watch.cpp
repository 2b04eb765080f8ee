// Every token verification answer, wherever it was made (the verify
// endpoints, credential checks, the local protocol's hello), is counted by
// code, watched for failure spikes (core/alerts/spike.hpp), and checked for
// credits running out.
#include "server/app.hpp"

namespace kw::server {
namespace {

// `cost` uses just spent: warn once as the credits cross 20% of the
// allowance (when that is at least one use) and once as they reach zero.
// After a refill the allowance is full again and the warnings can come again.
void watch_credits(App& app, const core::tokens::Verification& v, std::int64_t cost) {
    if (v.code != core::tokens::VerifyCode::VALID || !v.remaining_uses) return;
    const std::int64_t left = *v.remaining_uses;
    if (left == 0) {
        app.alerts.notify("credits_exhausted", v.name, "token " + v.kid + " has no credits left", {{"kid", v.kid}});
        return;
    }
    auto rec = app.store.token_record(v.kid);
    if (!rec || !rec->max_uses) return;
    // The allowance of this period: max_uses, or the refill amount after a refill.
    const std::int64_t allowance = rec->allowance(app.keys.clock().now());
    const std::int64_t fifth = allowance / 5;
    if (fifth >= 1 && left <= fifth && left + cost > fifth) {
        app.alerts.notify("credits_low", v.name, "token " + v.kid + " is down to 20% of its credits",
                          {{"kid", v.kid}, {"remaining", left}, {"allowance", allowance}});
    }
}

}  // namespace

void note_verification(App& app, const core::tokens::Verification& v, std::int64_t cost) {
    const std::string code(core::tokens::to_string(v.code));
    app.metrics.inc("keywarden_token_verifications_total", {{"code", code}});
    if (auto spike = app.spikes.record(code)) {
        const bool count = spike->trigger == core::alerts::Spike::Trigger::count;
        app.alerts.notify("verify_failed_spike", "", spike->message(),
                          {{"trigger", count ? "count" : "unusual"},
                           {"failures", spike->failures},
                           {"unknown", spike->unknown},
                           {"usual_per_minute", spike->usual},
                           {"last_code", code}});
    }
    watch_credits(app, v, cost);
}

}  // namespace kw::server
