#include "server/rotation_counter.hpp"

namespace kw::server {

RotationCounter::RotationCounter(core::metrics::Registry& metrics, core::UnixTime since)
    : metrics_(metrics), since_(since) {
    metrics_.help("keywarden_rotations_total", "counter",
                  "rotations: started, then one outcome each (success, failed, rolled_back)");
}

void RotationCounter::observe(const core::RotationRecord& r) {
    std::lock_guard lock(mutex_);
    const bool known = open_.contains(r.id);
    if (!known && r.started_at >= since_) metrics_.inc("keywarden_rotations_total", {{"outcome", "started"}});
    if (r.outcome.empty()) {
        open_.insert(r.id);
        return;
    }
    // A finished rotation is returned once: by the call that finished it.
    metrics_.inc("keywarden_rotations_total", {{"outcome", r.outcome}});
    open_.erase(r.id);
}

}  // namespace kw::server
