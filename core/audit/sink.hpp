#pragma once
// Where audit events are kept. One implementation per store backend
// (sqlite_sink.cpp now). append() is one atomic, durable commit: all of the
// batch and its checkpoint, or nothing.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/audit/event.hpp"

namespace kw::core::audit {

struct Query {
    std::optional<std::string> key;
    std::optional<EventType> type;
    std::optional<UnixTime> since;
    std::optional<std::uint64_t> after_seq;
    std::size_t limit = 1000;
};

class Sink {
public:
    virtual ~Sink() = default;
    [[nodiscard]] virtual std::optional<Event> last_event() = 0;
    [[nodiscard]] virtual std::optional<Checkpoint> last_checkpoint() = 0;
    virtual void append(std::span<const Event> events, const std::optional<Checkpoint>& checkpoint) = 0;

    /// How much of a spool (spool.hpp) the store holds: `ingested` bytes.
    struct SpoolMark {
        std::string id;
        std::uint64_t ingested = 0;
    };
    /// What a writer appends, built against the current head.
    struct Batch {
        std::vector<Event> events;
        std::optional<Checkpoint> checkpoint;
        std::optional<SpoolMark> spool_mark;  // stored in the same transaction
    };
    /// Several processes may append to one log (keywardend and hsm-keytool):
    /// inside one write transaction, reads the newest event and checkpoint,
    /// lets `build` chain the new events onto them, and commits the result.
    virtual Batch append_at_head(
        const std::function<Batch(const std::optional<Event>& head, const std::optional<Checkpoint>& last_checkpoint)>&
            build) = 0;
    /// Every event in seq order; stops early if `fn` returns false.
    virtual void for_each(const std::function<bool(const Event&)>& fn) = 0;
    [[nodiscard]] virtual std::vector<Checkpoint> checkpoints() = 0;
    [[nodiscard]] virtual std::vector<Event> query(const Query& q) = 0;

    /// Spool marks. A sink that keeps none (the default) must not be used
    /// with a spooling Log: recovery would take a spool's events again.
    [[nodiscard]] virtual std::uint64_t spool_ingested(const std::string& /*id*/) { return 0; }
    virtual void forget_spool(const std::string& /*id*/) {}
};

}  // namespace kw::core::audit
