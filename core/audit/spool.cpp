#include "core/audit/spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/crc.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <utility>

#include "core/error.hpp"
#include "core/wire/codec.hpp"

namespace kw::core::audit {
namespace {

constexpr std::string_view kInfix = "-audit-";
constexpr std::string_view kSuffix = ".spool";
// A frame larger than this is corruption, not an event (details are small).
constexpr std::uint32_t kMaxPayload = 1U << 24;

[[noreturn]] void fail(const std::string& what) {
    throw Error(ErrorKind::audit_failure, what + ": " + std::strerror(errno));
}

std::uint32_t crc32(std::span<const std::uint8_t> b) {
    boost::crc_32_type crc;
    crc.process_bytes(b.data(), b.size());
    return crc.checksum();
}

std::string random_hex() {
    std::random_device rd;  // a unique file name, not a secret
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id;
    for (int i = 0; i < 4; ++i) {
        const auto v = rd();
        for (int s = 0; s < 32; s += 4) id += kHex[(v >> s) & 0xF];
    }
    return id;
}

std::vector<std::uint8_t> encode(const Record& r, UnixTime time) {
    // One buffer: room for the frame header, then the payload; the header
    // is filled in once the payload's length and CRC are known.
    wire::Writer payload;
    payload.u32(0)
        .u32(0)
        .u8(static_cast<std::uint8_t>(r.type))
        .u64(static_cast<std::uint64_t>(time))
        .str(r.actor)
        .str(r.key)
        .str(r.kid)
        .str(r.operation)
        .str(r.outcome)
        .str(r.details.dump());
    auto out = std::move(payload.buffer());
    const auto len = static_cast<std::uint32_t>(out.size() - 8);
    const std::uint32_t crc = crc32(std::span(out).subspan(8));
    for (std::size_t i = 0; i < 4; ++i) {
        const std::size_t shift = 24 - 8 * i;
        out[i] = static_cast<std::uint8_t>(len >> shift);
        out[4 + i] = static_cast<std::uint8_t>(crc >> shift);
    }
    return out;
}

SpooledEvent decode(std::span<const std::uint8_t> payload) {
    wire::Reader in(payload);
    SpooledEvent e;
    const std::uint8_t type = in.u8();
    if (!parse_event_type(to_string(static_cast<EventType>(type)))) throw wire::WireError("unknown event type");
    e.record.type = static_cast<EventType>(type);
    e.time = static_cast<UnixTime>(in.u64());
    e.record.actor = in.str();
    e.record.key = in.str();
    e.record.kid = in.str();
    e.record.operation = in.str();
    e.record.outcome = in.str();
    e.record.details = nlohmann::json::parse(in.str());
    in.finish();
    return e;
}

}  // namespace

SpoolFile::SpoolFile(int fd, std::string path, std::string id, std::uint64_t size)
    : fd_(fd), path_(std::move(path)), id_(std::move(id)), size_(size) {}

SpoolFile::SpoolFile(SpoolFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)), id_(std::move(other.id_)), size_(other.size_) {}

SpoolFile& SpoolFile::operator=(SpoolFile&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
        path_ = std::move(other.path_);
        id_ = std::move(other.id_);
        size_ = other.size_;
    }
    return *this;
}

SpoolFile::~SpoolFile() {
    if (fd_ >= 0) ::close(fd_);
}

std::string SpoolFile::new_series() {
    return random_hex();
}

SpoolFile SpoolFile::create(const std::string& store_path, const std::string& series, std::uint32_t number) {
    char num[16];
    std::snprintf(num, sizeof num, "%08u", number);
    const std::string id = series + "-" + num;
    const std::string path = store_path + std::string(kInfix) + id + std::string(kSuffix);
    // Made and locked under a temporary name, then renamed: a recovering
    // process never sees (and takes) a spool its owner has not locked yet.
    const std::string tmp = path + ".new";
    const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) fail("cannot create audit spool " + tmp);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        ::close(fd);
        errno = e;
        fail("cannot set up audit spool " + path);
    }
    return SpoolFile(fd, path, id, 0);
}

std::optional<SpoolFile> SpoolFile::adopt(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return std::nullopt;
        fail("cannot open audit spool " + path);
    }
    struct stat st {};
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || ::fstat(fd, &st) != 0 || st.st_nlink == 0) {
        // Held by a live writer, or recovered and deleted by someone else.
        ::close(fd);
        return std::nullopt;
    }
    const std::string name = std::filesystem::path(path).filename().string();
    const auto from = name.rfind(kInfix) + kInfix.size();
    return SpoolFile(fd, path, name.substr(from, name.size() - from - kSuffix.size()),
                     static_cast<std::uint64_t>(st.st_size));
}

std::vector<std::string> SpoolFile::list(const std::string& store_path) {
    namespace fs = std::filesystem;
    const fs::path store(store_path);
    const std::string prefix = store.filename().string() + std::string(kInfix);
    std::vector<std::string> out;
    std::error_code ec;
    const fs::path dir = store.has_parent_path() ? store.parent_path() : fs::path(".");
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.size() > prefix.size() + kSuffix.size() && name.rfind(prefix, 0) == 0 && name.ends_with(kSuffix)) {
            out.push_back(entry.path().string());
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::uint64_t SpoolFile::append(const Record& record, UnixTime time) {
    const auto frame = encode(record, time);
    const ssize_t n = ::write(fd_, frame.data(), frame.size());
    if (n == static_cast<ssize_t>(frame.size())) {
        size_ += frame.size();
        return size_;
    }
    const int e = n < 0 ? errno : ENOSPC;
    // A partial frame would hide every later one from recovery: cut it off.
    if (n > 0 && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
        errno = e;
        fail("audit spool " + path_ + " is damaged (partial write not removed)");
    }
    errno = e;
    fail("cannot write the audit spool " + path_);
}

SpoolContents SpoolFile::read_from(std::uint64_t offset) const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("cannot stat audit spool " + path_);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    SpoolContents out;
    if (offset >= size) return out;
    std::vector<std::uint8_t> buf(size - offset);
    std::size_t got = 0;
    while (got < buf.size()) {
        const ssize_t n = ::pread(fd_, buf.data() + got, buf.size() - got, static_cast<off_t>(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail("cannot read audit spool " + path_);
        got += static_cast<std::size_t>(n);
    }
    std::size_t pos = 0;
    while (buf.size() - pos >= 8) {
        const std::span<const std::uint8_t> all(buf);
        wire::Reader head{all.subspan(pos, 8)};
        const std::uint32_t len = head.u32();
        const std::uint32_t crc = head.u32();
        if (len > kMaxPayload || buf.size() - pos - 8 < len) break;
        const auto payload = all.subspan(pos + 8, len);
        if (crc32(payload) != crc) break;
        try {
            SpooledEvent e = decode(payload);
            pos += 8 + len;
            e.end = offset + pos;
            out.events.push_back(std::move(e));
        } catch (const std::exception&) {
            break;
        }
    }
    out.bad_bytes = buf.size() - pos;
    return out;
}

void SpoolFile::remove() {
    if (fd_ < 0) return;
    ::unlink(path_.c_str());
    ::close(std::exchange(fd_, -1));
}

}  // namespace kw::core::audit
