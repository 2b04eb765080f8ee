#pragma once
// A small builder for CK_ATTRIBUTE templates that owns the values it points
// to, so templates can be assembled without dangling pointers.
#include <cstdint>
#include <cstring>
#include <deque>
#include <span>
#include <string_view>
#include <vector>

#include "token/pkcs11.hpp"

namespace kw::token {

class Template {
public:
    Template& add_bool(CK_ATTRIBUTE_TYPE type, bool value) {
        return add_bytes(type, std::vector<std::uint8_t>{static_cast<std::uint8_t>(value ? CK_TRUE : CK_FALSE)});
    }
    Template& add_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
        std::vector<std::uint8_t> raw(sizeof value);
        std::memcpy(raw.data(), &value, sizeof value);
        return add_bytes(type, std::move(raw));
    }
    Template& add_string(CK_ATTRIBUTE_TYPE type, std::string_view value) {
        return add_bytes(type, std::vector<std::uint8_t>(value.begin(), value.end()));
    }
    Template& add_bytes(CK_ATTRIBUTE_TYPE type, std::vector<std::uint8_t> value) {
        storage_.push_back(std::move(value));
        auto& stored = storage_.back();
        attrs_.push_back(CK_ATTRIBUTE{type, stored.empty() ? nullptr : stored.data(), stored.size()});
        return *this;
    }
    [[nodiscard]] CK_ATTRIBUTE* data() noexcept { return attrs_.data(); }
    [[nodiscard]] CK_ULONG size() const noexcept { return attrs_.size(); }
    [[nodiscard]] std::span<CK_ATTRIBUTE> span() noexcept { return attrs_; }

private:
    std::deque<std::vector<std::uint8_t>> storage_;  // deque: stable addresses
    std::vector<CK_ATTRIBUTE> attrs_;
};

}  // namespace kw::token
