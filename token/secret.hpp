#pragma once
// Byte and string buffers for secrets (PINs, random token bodies) that are
// wiped with OPENSSL_cleanse when they go out of scope, including on the
// exception path. Copying is disabled so a secret exists in one place.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kw::token {

void secure_wipe(void* data, std::size_t size) noexcept;

class SecretString {
public:
    SecretString() = default;
    explicit SecretString(std::string value) : value_(std::move(value)) {}
    SecretString(const SecretString&) = delete;
    SecretString& operator=(const SecretString&) = delete;
    SecretString(SecretString&& other) noexcept : value_(std::move(other.value_)) { other.wipe(); }
    SecretString& operator=(SecretString&& other) noexcept {
        wipe();
        value_ = std::move(other.value_);
        other.wipe();
        return *this;
    }
    ~SecretString() { wipe(); }

    [[nodiscard]] std::string_view view() const noexcept { return value_; }
    [[nodiscard]] bool empty() const noexcept { return value_.empty(); }
    void wipe() noexcept {
        secure_wipe(value_.data(), value_.size());
        value_.clear();
    }

private:
    std::string value_;
};

class SecretBytes {
public:
    SecretBytes() = default;
    explicit SecretBytes(std::size_t n) : value_(n) {}
    explicit SecretBytes(std::vector<std::uint8_t> v) : value_(std::move(v)) {}
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;
    SecretBytes(SecretBytes&& other) noexcept : value_(std::move(other.value_)) {}
    SecretBytes& operator=(SecretBytes&& other) noexcept {
        wipe();
        value_ = std::move(other.value_);
        return *this;
    }
    ~SecretBytes() { wipe(); }

    [[nodiscard]] std::span<const std::uint8_t> view() const noexcept { return value_; }
    [[nodiscard]] std::span<std::uint8_t> mut() noexcept { return value_; }
    [[nodiscard]] std::size_t size() const noexcept { return value_.size(); }
    void wipe() noexcept {
        secure_wipe(value_.data(), value_.size());
        value_.clear();
    }

private:
    std::vector<std::uint8_t> value_;
};

}  // namespace kw::token
