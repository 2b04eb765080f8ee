#pragma once
// keywarden_rotations_total{outcome}: each rotation counts once as
// "started" when it begins (by the scheduler or the admin API) and once more
// with its outcome (success, failed, rolled_back) when it ends. The
// scheduler sees an open rotation on every tick while it waits (published,
// phasing, overlapping), so counting every record it returns would count
// ticks, not rotations.
#include <cstdint>
#include <mutex>
#include <set>

#include "core/metrics/registry.hpp"
#include "core/store/store.hpp"

namespace kw::server {

class RotationCounter {
public:
    /// Rotations started before `since` (unix seconds; e.g. before a restart)
    /// are not counted as started again when they are first seen.
    RotationCounter(core::metrics::Registry& metrics, core::UnixTime since);
    /// Counts what `r` (just returned by the engine) adds: a start not seen
    /// before, an outcome not seen before.
    void observe(const core::RotationRecord& r);

private:
    core::metrics::Registry& metrics_;
    core::UnixTime since_;
    std::mutex mutex_;
    std::set<std::int64_t> open_;  // started and counted, not finished
};

}  // namespace kw::server
