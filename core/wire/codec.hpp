#pragma once
// Encoding for the local binary protocol (docs/local-protocol.md).
//
// Every integer is big-endian; a byte string or text is a u32 length followed
// by the bytes. Reader never reads past its buffer: a short or inconsistent
// message throws WireError, which the server answers with BAD_REQUEST and the
// client treats as a broken connection.
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kw::wire {

class WireError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Writer {
public:
    Writer& u8(std::uint8_t v) {
        buf_.push_back(v);
        return *this;
    }
    Writer& u16(std::uint16_t v) { return be(v, 2); }
    Writer& u32(std::uint32_t v) { return be(v, 4); }
    Writer& u64(std::uint64_t v) { return be(v, 8); }
    Writer& bytes(std::span<const std::uint8_t> b) {
        u32(static_cast<std::uint32_t>(b.size()));
        buf_.insert(buf_.end(), b.begin(), b.end());
        return *this;
    }
    Writer& str(std::string_view s) { return bytes({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}); }
    [[nodiscard]] std::vector<std::uint8_t>& buffer() noexcept { return buf_; }
    [[nodiscard]] const std::vector<std::uint8_t>& buffer() const noexcept { return buf_; }

private:
    Writer& be(std::uint64_t v, int n) {
        for (int i = n - 1; i >= 0; --i) buf_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
        return *this;
    }
    std::vector<std::uint8_t> buf_;
};

class Reader {
public:
    explicit Reader(std::span<const std::uint8_t> data) : data_(data) {}

    [[nodiscard]] std::uint8_t u8() { return static_cast<std::uint8_t>(be(1)); }
    [[nodiscard]] std::uint16_t u16() { return static_cast<std::uint16_t>(be(2)); }
    [[nodiscard]] std::uint32_t u32() { return static_cast<std::uint32_t>(be(4)); }
    [[nodiscard]] std::uint64_t u64() { return be(8); }
    /// A view into the message: valid while the message buffer lives.
    [[nodiscard]] std::span<const std::uint8_t> bytes() {
        const std::uint32_t n = u32();
        need(n);
        auto out = data_.subspan(pos_, n);
        pos_ += n;
        return out;
    }
    [[nodiscard]] std::string str() {
        auto b = bytes();
        return {reinterpret_cast<const char*>(b.data()), b.size()};
    }
    [[nodiscard]] bool done() const noexcept { return pos_ == data_.size(); }
    /// Throws unless every byte was consumed (trailing garbage is an error).
    void finish() const {
        if (!done()) throw WireError("trailing bytes in message");
    }

private:
    void need(std::size_t n) const {
        if (data_.size() - pos_ < n) throw WireError("message truncated");
    }
    std::uint64_t be(std::size_t n) {
        need(n);
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) v = (v << 8) | data_[pos_ + i];
        pos_ += n;
        return v;
    }
    std::span<const std::uint8_t> data_;
    std::size_t pos_ = 0;
};

}  // namespace kw::wire
