#include "token/slot.hpp"

#include <p11-kit/uri.h>

#include <memory>
#include <vector>

#include "token/error.hpp"

namespace kw::token {

std::string trim_padded(const unsigned char* text, std::size_t size) {
    std::string s(reinterpret_cast<const char*>(text), size);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
    return s;
}

namespace {

struct UriDeleter {
    void operator()(P11KitUri* uri) const noexcept { p11_kit_uri_free(uri); }
};
using UriPtr = std::unique_ptr<P11KitUri, UriDeleter>;

UriPtr parse_uri(const std::string& text) {
    UriPtr uri(p11_kit_uri_new());
    int rc = p11_kit_uri_parse(text.c_str(), P11_KIT_URI_FOR_TOKEN, uri.get());
    if (rc != P11_KIT_URI_OK) {
        throw TokenError(TokenErrorKind::bad_argument, "bad PKCS#11 URI '" + text + "': " + p11_kit_uri_message(rc));
    }
    return uri;
}

std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>> raw_tokens(const Module& module) {
    CK_ULONG count = 0;
    check("C_GetSlotList", module.fn()->C_GetSlotList(CK_TRUE, nullptr, &count));
    std::vector<CK_SLOT_ID> slots(count);
    check("C_GetSlotList", module.fn()->C_GetSlotList(CK_TRUE, slots.data(), &count));
    slots.resize(count);
    std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>> out;
    for (CK_SLOT_ID slot : slots) {
        CK_TOKEN_INFO info{};
        check("C_GetTokenInfo", module.fn()->C_GetTokenInfo(slot, &info));
        out.emplace_back(slot, info);
    }
    return out;
}

TokenInfo to_info(CK_SLOT_ID slot, const CK_TOKEN_INFO& raw) {
    TokenInfo info;
    info.slot = slot;
    info.label = trim_padded(raw.label, sizeof raw.label);
    info.serial = trim_padded(raw.serialNumber, sizeof raw.serialNumber);
    info.manufacturer = trim_padded(raw.manufacturerID, sizeof raw.manufacturerID);
    info.model = trim_padded(raw.model, sizeof raw.model);
    info.initialized = (raw.flags & CKF_TOKEN_INITIALIZED) != 0;
    info.user_pin_initialized = (raw.flags & CKF_USER_PIN_INITIALIZED) != 0;
    return info;
}

std::string describe(const TokenSelector& s) {
    std::string d;
    if (s.uri) d += "uri " + *s.uri;
    if (s.label) d += std::string(d.empty() ? "" : ", ") + "label '" + *s.label + "'";
    if (s.serial) d += std::string(d.empty() ? "" : ", ") + "serial '" + *s.serial + "'";
    return d.empty() ? "any token" : d;
}

}  // namespace

std::vector<TokenInfo> list_tokens(const Module& module) {
    std::vector<TokenInfo> out;
    for (auto& [slot, raw] : raw_tokens(module)) out.push_back(to_info(slot, raw));
    return out;
}

TokenInfo find_token(const Module& module, const TokenSelector& selector) {
    UriPtr uri;
    if (selector.uri) uri = parse_uri(*selector.uri);
    std::string seen;
    for (auto& [slot, raw] : raw_tokens(module)) {
        TokenInfo info = to_info(slot, raw);
        if (!info.initialized) continue;
        seen += (seen.empty() ? "" : ", ") + ("'" + info.label + "' (serial " + info.serial + ")");
        if (uri && p11_kit_uri_match_token_info(uri.get(), &raw) == 0) continue;
        if (selector.label && *selector.label != info.label) continue;
        if (selector.serial && *selector.serial != info.serial) continue;
        return info;
    }
    throw TokenError(TokenErrorKind::token_not_found,
                     "no token matches " + describe(selector) + " in " + module.path() +
                         (seen.empty() ? " (no initialised tokens)" : " (present: " + seen + ")"));
}

}  // namespace kw::token
