#include "token/object.hpp"

#include "token/error.hpp"

namespace kw::token {

std::vector<std::uint8_t> get_attribute(const Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE attr{type, nullptr, 0};
    check("C_GetAttributeValue", s.fn()->C_GetAttributeValue(s.handle(), h, &attr, 1));
    std::vector<std::uint8_t> value(attr.ulValueLen);
    attr.pValue = value.data();
    check("C_GetAttributeValue", s.fn()->C_GetAttributeValue(s.handle(), h, &attr, 1));
    value.resize(attr.ulValueLen);
    return value;
}

bool get_bool(const Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE attr{type, &value, sizeof value};
    check("C_GetAttributeValue", s.fn()->C_GetAttributeValue(s.handle(), h, &attr, 1));
    return value == CK_TRUE;
}

CK_ULONG get_ulong(const Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    CK_ULONG value = 0;
    CK_ATTRIBUTE attr{type, &value, sizeof value};
    check("C_GetAttributeValue", s.fn()->C_GetAttributeValue(s.handle(), h, &attr, 1));
    return value;
}

std::vector<CK_OBJECT_HANDLE> find_objects(const Session& s, std::span<CK_ATTRIBUTE> templ, std::size_t max) {
    check("C_FindObjectsInit", s.fn()->C_FindObjectsInit(s.handle(), templ.data(), templ.size()));
    std::vector<CK_OBJECT_HANDLE> found(max);
    CK_ULONG count = 0;
    CK_RV rv = s.fn()->C_FindObjects(s.handle(), found.data(), found.size(), &count);
    // Always end the search, or the session stays in CKR_OPERATION_ACTIVE.
    CK_RV final_rv = s.fn()->C_FindObjectsFinal(s.handle());
    check("C_FindObjects", rv);
    check("C_FindObjectsFinal", final_rv);
    found.resize(count);
    return found;
}

void destroy_object(const Session& s, CK_OBJECT_HANDLE h) {
    check("C_DestroyObject", s.fn()->C_DestroyObject(s.handle(), h));
}

}  // namespace kw::token
