#pragma once
// The audit spool: where keywardend makes an event durable before answering,
// so that a request pays one write() instead of a store commit and a token
// MAC.
//
// A spool is a file next to the store, `<store file>-audit-<id>.spool`,
// created 0600 and held under an exclusive flock(2) by the process that
// writes it. Each event is appended as one frame with one write():
//   u32 big-endian payload length | u32 CRC-32 of the payload | payload
// The payload is the Record and the time it was submitted (wire encoding,
// core/wire/codec.hpp). Once write() returned the event is in the kernel's
// page cache, so it survives kill -9 of the process ("process" durability);
// it is not fsync'd, which is why the spool is not used for "power".
//
// The Log (log.hpp) moves spooled events into the store in batches, and the
// store records in the same transaction how many bytes of the spool it has
// taken (Sink::spool_ingested). After a crash, whoever opens the log next
// finds the spool's flock free, takes the events after that mark, and
// deletes the file: every event reaches the store exactly once. A torn last
// frame (power loss in the middle of a write) fails its CRC and is reported.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/audit/event.hpp"
#include "core/clock.hpp"

namespace kw::core::audit {

/// An event as it sits in a spool.
struct SpooledEvent {
    Record record;
    UnixTime time = 0;
    std::uint64_t end = 0;  // file offset just after its frame
};

/// What a spool file holds after a given offset.
struct SpoolContents {
    std::vector<SpooledEvent> events;
    std::uint64_t bad_bytes = 0;  // a torn or corrupt tail, not read (0 if none)
};

class SpoolFile {
public:
    /// Creates a new spool for the store file `store_path` and locks it:
    /// number `number` of the writer's `series` (new_series(), one per
    /// writer), so one writer's spools sort in the order they were made.
    /// Throws Error(audit_failure) if it cannot.
    static SpoolFile create(const std::string& store_path, const std::string& series, std::uint32_t number);
    static SpoolFile create(const std::string& store_path) { return create(store_path, new_series(), 0); }
    [[nodiscard]] static std::string new_series();
    /// Opens a spool left by a process that is gone (its lock is free); none
    /// if another process still holds it or it vanished meanwhile.
    static std::optional<SpoolFile> adopt(const std::string& path);
    /// The spools next to `store_path` (live ones included), sorted by name:
    /// one writer's in the order it made them.
    [[nodiscard]] static std::vector<std::string> list(const std::string& store_path);

    SpoolFile(SpoolFile&& other) noexcept;
    SpoolFile& operator=(SpoolFile&& other) noexcept;
    SpoolFile(const SpoolFile&) = delete;
    SpoolFile& operator=(const SpoolFile&) = delete;
    ~SpoolFile();  // closes (and so unlocks); never deletes

    /// Appends one event with one write(); returns the offset after it.
    /// Throws Error(audit_failure) (disk full, I/O error): nothing is spooled.
    std::uint64_t append(const Record& record, UnixTime time);
    /// Every whole event after `offset`.
    [[nodiscard]] SpoolContents read_from(std::uint64_t offset) const;
    /// Deletes the file (while still holding its lock), then closes it.
    void remove();

    /// The name the store's ingestion mark is kept under.
    [[nodiscard]] const std::string& id() const noexcept { return id_; }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
    [[nodiscard]] bool open() const noexcept { return fd_ >= 0; }

private:
    SpoolFile(int fd, std::string path, std::string id, std::uint64_t size);
    int fd_ = -1;
    std::string path_;
    std::string id_;
    std::uint64_t size_ = 0;  // bytes written so far
};

}  // namespace kw::core::audit
