// Calls libkeywarden-pkcs11.so's function list with bad arguments, in bad
// states and from many threads at once. Built, like the copy of the module it
// loads, with AddressSanitizer and UBSan (tests/meson.build): a crash, a
// sanitizer report or a leak fails the test as surely as a wrong CKR.
//
//   pkcs11_abuse MODULE API_TOKEN_FILE
//
// Run by tests/pkcs11_abuse_test.sh, which has made the keys ec1 (ECDSA
// P-256), rsa1 (RSA 2048) and hm1 (HMAC), issued the token and started
// keywardend (KEYWARDEN_LOCAL_SOCKET names its socket). One line per check;
// stops at the first failure.
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "token/pkcs11.hpp"

namespace {

int checks = 0;
CK_FUNCTION_LIST_PTR f = nullptr;

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    std::exit(1);
}

void ok(const std::string& what) {
    std::printf("ok %d - %s\n", ++checks, what.c_str());
    std::fflush(stdout);
}

void check(bool cond, const std::string& what) {
    if (!cond) fail(what);
    ok(what);
}

void expect(CK_RV got, CK_RV want, const std::string& what) {
    if (got != want) {
        char buf[96];
        std::snprintf(buf, sizeof buf, ": 0x%lx, want 0x%lx", static_cast<unsigned long>(got),
                      static_cast<unsigned long>(want));
        fail(what + buf);
    }
    ok(what);
}

CK_MECHANISM mech(CK_MECHANISM_TYPE t) {
    return CK_MECHANISM{t, nullptr, 0};
}

CK_OBJECT_HANDLE find(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char* label) {
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, const_cast<char*>(label), std::strlen(label)}};
    if (f->C_FindObjectsInit(s, t, 2) != CKR_OK) fail(std::string("C_FindObjectsInit for ") + label);
    CK_OBJECT_HANDLE h[2];
    CK_ULONG n = 0;
    if (f->C_FindObjects(s, h, 2, &n) != CKR_OK || n != 1) fail(std::string("C_FindObjects for ") + label);
    if (f->C_FindObjectsFinal(s) != CKR_OK) fail("C_FindObjectsFinal");
    return h[0];
}

// Mutex callbacks an application might pass to C_Initialize.
CK_RV create_mutex(void** m) {
    *m = nullptr;
    return CKR_OK;
}
CK_RV mutex_op(void*) {
    return CKR_OK;
}

void before_initialize() {
    CK_INFO info;
    CK_ULONG n = 0;
    CK_SESSION_HANDLE s = 0;
    CK_MECHANISM m = mech(CKM_ECDSA);
    expect(f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED, "C_GetInfo before C_Initialize");
    expect(f->C_GetSlotList(CK_FALSE, nullptr, &n), CKR_CRYPTOKI_NOT_INITIALIZED, "C_GetSlotList before C_Initialize");
    expect(f->C_OpenSession(1, CKF_SERIAL_SESSION, nullptr, nullptr, &s), CKR_CRYPTOKI_NOT_INITIALIZED,
           "C_OpenSession before C_Initialize");
    expect(f->C_SignInit(1, &m, 1), CKR_CRYPTOKI_NOT_INITIALIZED, "C_SignInit before C_Initialize");
    expect(f->C_EncryptInit(1, &m, 1), CKR_CRYPTOKI_NOT_INITIALIZED, "C_EncryptInit before C_Initialize");
    expect(f->C_Finalize(nullptr), CKR_CRYPTOKI_NOT_INITIALIZED, "C_Finalize before C_Initialize");

    CK_C_INITIALIZE_ARGS a{};
    a.pReserved = &a;
    expect(f->C_Initialize(&a), CKR_ARGUMENTS_BAD, "C_Initialize with pReserved set");
    a = CK_C_INITIALIZE_ARGS{};
    a.CreateMutex = create_mutex;
    a.LockMutex = mutex_op;
    expect(f->C_Initialize(&a), CKR_ARGUMENTS_BAD, "C_Initialize with two of the four mutex functions");
    a.DestroyMutex = mutex_op;
    a.UnlockMutex = mutex_op;
    expect(f->C_Initialize(&a), CKR_CANT_LOCK, "C_Initialize with mutex functions but no CKF_OS_LOCKING_OK");
    a.flags = CKF_OS_LOCKING_OK;
    expect(f->C_Initialize(&a), CKR_OK, "C_Initialize with mutex functions and CKF_OS_LOCKING_OK");
    expect(f->C_Finalize(&a), CKR_ARGUMENTS_BAD, "C_Finalize with a non-NULL argument");
    expect(f->C_Finalize(nullptr), CKR_OK, "C_Finalize");
    a = CK_C_INITIALIZE_ARGS{};
    a.flags = CKF_OS_LOCKING_OK;
    expect(f->C_Initialize(&a), CKR_OK, "C_Initialize with CKF_OS_LOCKING_OK only");
    expect(f->C_Initialize(nullptr), CKR_CRYPTOKI_ALREADY_INITIALIZED, "second C_Initialize");
    expect(f->C_Finalize(nullptr), CKR_OK, "C_Finalize");
    expect(f->C_Initialize(nullptr), CKR_OK, "C_Initialize(NULL)");
}

void slot_and_token() {
    expect(f->C_GetInfo(nullptr), CKR_ARGUMENTS_BAD, "C_GetInfo(NULL)");
    expect(f->C_GetSlotList(CK_TRUE, nullptr, nullptr), CKR_ARGUMENTS_BAD, "C_GetSlotList with a NULL count");
    CK_ULONG n = 0;
    expect(f->C_GetSlotList(CK_TRUE, nullptr, &n), CKR_OK, "C_GetSlotList(NULL buffer)");
    check(n == 1, "... counts one slot");
    CK_SLOT_ID slots[2] = {0, 0};
    n = 0;
    expect(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_BUFFER_TOO_SMALL, "C_GetSlotList with room for 0");
    check(n == 1 && slots[0] == 0, "... sets the count, writes nothing");
    expect(f->C_GetSlotInfo(1, nullptr), CKR_ARGUMENTS_BAD, "C_GetSlotInfo(1, NULL)");
    CK_SLOT_INFO si;
    expect(f->C_GetSlotInfo(7, &si), CKR_SLOT_ID_INVALID, "C_GetSlotInfo of slot 7");
    expect(f->C_GetTokenInfo(1, nullptr), CKR_ARGUMENTS_BAD, "C_GetTokenInfo(1, NULL)");
    CK_TOKEN_INFO ti;
    expect(f->C_GetTokenInfo(0, &ti), CKR_SLOT_ID_INVALID, "C_GetTokenInfo of slot 0");
    expect(f->C_GetMechanismList(1, nullptr, nullptr), CKR_ARGUMENTS_BAD, "C_GetMechanismList with a NULL count");
    expect(f->C_GetMechanismList(1, nullptr, &n), CKR_OK, "C_GetMechanismList(NULL buffer)");
    check(n == 16, "... counts 16 mechanisms");
    std::vector<CK_MECHANISM_TYPE> list(n);
    CK_ULONG short_n = 3;
    expect(f->C_GetMechanismList(1, list.data(), &short_n), CKR_BUFFER_TOO_SMALL, "C_GetMechanismList with room for 3");
    check(short_n == 16, "... sets the count to 16");
    expect(f->C_GetMechanismList(2, list.data(), &n), CKR_SLOT_ID_INVALID, "C_GetMechanismList of slot 2");
    CK_MECHANISM_INFO mi;
    expect(f->C_GetMechanismInfo(1, CKM_ECDSA, nullptr), CKR_ARGUMENTS_BAD, "C_GetMechanismInfo(NULL info)");
    expect(f->C_GetMechanismInfo(1, CKM_AES_CBC, &mi), CKR_MECHANISM_INVALID, "C_GetMechanismInfo(CKM_AES_CBC)");
    expect(f->C_GetMechanismInfo(1, CKM_VENDOR_DEFINED | 7, &mi), CKR_MECHANISM_INVALID,
           "C_GetMechanismInfo(vendor mechanism)");
    expect(f->C_CloseAllSessions(9), CKR_SLOT_ID_INVALID, "C_CloseAllSessions(9)");
}

void unknown_sessions() {
    const CK_SESSION_HANDLE bad[] = {0, 4242, ~CK_SESSION_HANDLE{0}};
    for (CK_SESSION_HANDLE s : bad) {
        const std::string at = " on session " + std::to_string(s);
        CK_SESSION_INFO si;
        CK_MECHANISM m = mech(CKM_ECDSA_SHA256);
        CK_BYTE buf[64];
        CK_ULONG n = sizeof buf;
        CK_OBJECT_HANDLE h[4];
        CK_ATTRIBUTE a{CKA_LABEL, buf, sizeof buf};
        CK_BYTE pin[] = "12345678";
        expect(f->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID, "C_CloseSession" + at);
        expect(f->C_GetSessionInfo(s, &si), CKR_SESSION_HANDLE_INVALID, "C_GetSessionInfo" + at);
        expect(f->C_Login(s, CKU_USER, pin, 8), CKR_SESSION_HANDLE_INVALID, "C_Login" + at);
        expect(f->C_Logout(s), CKR_SESSION_HANDLE_INVALID, "C_Logout" + at);
        expect(f->C_FindObjectsInit(s, nullptr, 0), CKR_SESSION_HANDLE_INVALID, "C_FindObjectsInit" + at);
        expect(f->C_FindObjects(s, h, 4, &n), CKR_SESSION_HANDLE_INVALID, "C_FindObjects" + at);
        expect(f->C_FindObjectsFinal(s), CKR_SESSION_HANDLE_INVALID, "C_FindObjectsFinal" + at);
        expect(f->C_GetAttributeValue(s, 1, &a, 1), CKR_SESSION_HANDLE_INVALID, "C_GetAttributeValue" + at);
        expect(f->C_GetObjectSize(s, 1, &n), CKR_SESSION_HANDLE_INVALID, "C_GetObjectSize" + at);
        expect(f->C_SignInit(s, &m, 1), CKR_SESSION_HANDLE_INVALID, "C_SignInit" + at);
        expect(f->C_Sign(s, buf, 4, buf, &n), CKR_SESSION_HANDLE_INVALID, "C_Sign" + at);
        expect(f->C_SignUpdate(s, buf, 4), CKR_SESSION_HANDLE_INVALID, "C_SignUpdate" + at);
        expect(f->C_SignFinal(s, buf, &n), CKR_SESSION_HANDLE_INVALID, "C_SignFinal" + at);
        expect(f->C_VerifyInit(s, &m, 1), CKR_SESSION_HANDLE_INVALID, "C_VerifyInit" + at);
        expect(f->C_Verify(s, buf, 4, buf, 64), CKR_SESSION_HANDLE_INVALID, "C_Verify" + at);
        expect(f->C_VerifyUpdate(s, buf, 4), CKR_SESSION_HANDLE_INVALID, "C_VerifyUpdate" + at);
        expect(f->C_VerifyFinal(s, buf, 64), CKR_SESSION_HANDLE_INVALID, "C_VerifyFinal" + at);
        expect(f->C_GenerateRandom(s, buf, 8), CKR_SESSION_HANDLE_INVALID, "C_GenerateRandom" + at);
        expect(f->C_SeedRandom(s, buf, 8), CKR_SESSION_HANDLE_INVALID, "C_SeedRandom" + at);
    }
}

CK_SESSION_HANDLE open_session() {
    CK_SESSION_HANDLE s = 0;
    if (f->C_OpenSession(1, CKF_SERIAL_SESSION, nullptr, nullptr, &s) != CKR_OK) fail("C_OpenSession");
    return s;
}

void sessions_and_login(CK_SESSION_HANDLE s, const std::string& token) {
    CK_SESSION_HANDLE other = 0;
    expect(f->C_OpenSession(1, CKF_SERIAL_SESSION, nullptr, nullptr, nullptr), CKR_ARGUMENTS_BAD,
           "C_OpenSession with a NULL handle pointer");
    expect(f->C_OpenSession(1, 0, nullptr, nullptr, &other), CKR_SESSION_PARALLEL_NOT_SUPPORTED,
           "C_OpenSession without CKF_SERIAL_SESSION");
    expect(f->C_OpenSession(3, CKF_SERIAL_SESSION, nullptr, nullptr, &other), CKR_SLOT_ID_INVALID,
           "C_OpenSession on slot 3");
    expect(f->C_GetSessionInfo(s, nullptr), CKR_ARGUMENTS_BAD, "C_GetSessionInfo(NULL)");

    CK_MECHANISM m = mech(CKM_ECDSA_SHA256);
    expect(f->C_SignInit(s, &m, 1), CKR_USER_NOT_LOGGED_IN, "C_SignInit before login");
    CK_BYTE buf[16];
    expect(f->C_GenerateRandom(s, buf, sizeof buf), CKR_USER_NOT_LOGGED_IN, "C_GenerateRandom before login");
    expect(f->C_Logout(s), CKR_USER_NOT_LOGGED_IN, "C_Logout before login");
    CK_BYTE pin[] = "kw_live_x";
    expect(f->C_Login(s, CKU_USER, nullptr, 9), CKR_ARGUMENTS_BAD, "C_Login with a NULL PIN");
    expect(f->C_Login(s, 77, pin, 9), CKR_USER_TYPE_INVALID, "C_Login as user type 77");
    expect(f->C_Login(s, CKU_SO, pin, 9), CKR_USER_TYPE_INVALID, "C_Login as SO");
    expect(f->C_Login(s, CKU_USER, pin, 0), CKR_PIN_INCORRECT, "C_Login with an empty PIN");
    std::vector<CK_BYTE> junk(70000, 'A');
    expect(f->C_Login(s, CKU_USER, junk.data(), junk.size()), CKR_PIN_INCORRECT, "C_Login with a 70000-byte PIN");
    std::vector<CK_BYTE> binary(64);
    for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<CK_BYTE>(i * 37);
    expect(f->C_Login(s, CKU_USER, binary.data(), binary.size()), CKR_PIN_INCORRECT, "C_Login with binary garbage");
    std::string truncated = token.substr(0, token.size() - 1);
    expect(f->C_Login(s, CKU_USER, reinterpret_cast<CK_BYTE_PTR>(truncated.data()), truncated.size()),
           CKR_PIN_INCORRECT, "C_Login with the token's first n-1 bytes");
    std::string copy = token;
    expect(f->C_Login(s, CKU_USER, reinterpret_cast<CK_BYTE_PTR>(copy.data()), copy.size()), CKR_OK, "C_Login");
    expect(f->C_Login(s, CKU_USER, reinterpret_cast<CK_BYTE_PTR>(copy.data()), copy.size()), CKR_USER_ALREADY_LOGGED_IN,
           "C_Login twice");
    expect(f->C_GenerateRandom(s, nullptr, 8), CKR_ARGUMENTS_BAD, "C_GenerateRandom(NULL, 8)");
    std::vector<CK_BYTE> rnd(5000, 0);
    expect(f->C_GenerateRandom(s, rnd.data(), rnd.size()), CKR_OK, "C_GenerateRandom of 5000 bytes");
    std::size_t zeros = 0;
    for (CK_BYTE b : rnd) zeros += b == 0;
    check(zeros < 100, "... the bytes look random");
    expect(f->C_SeedRandom(s, rnd.data(), 8), CKR_RANDOM_SEED_NOT_SUPPORTED, "C_SeedRandom");
    expect(f->C_SeedRandom(s, nullptr, 8), CKR_ARGUMENTS_BAD, "C_SeedRandom(NULL, 8)");
}

void objects(CK_SESSION_HANDLE s) {
    CK_OBJECT_HANDLE h[8];
    CK_ULONG n = 0;
    expect(f->C_FindObjectsInit(s, nullptr, 2), CKR_ARGUMENTS_BAD, "C_FindObjectsInit(NULL template, 2)");
    expect(f->C_FindObjects(s, h, 8, &n), CKR_OPERATION_NOT_INITIALIZED, "C_FindObjects without init");
    expect(f->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED, "C_FindObjectsFinal without init");
    // A template entry that claims a value but has no buffer.
    CK_ATTRIBUTE nullval{CKA_LABEL, nullptr, 3};
    expect(f->C_FindObjectsInit(s, &nullval, 1), CKR_ARGUMENTS_BAD,
           "C_FindObjectsInit: CKA_LABEL with NULL pValue, length 3");
    expect(f->C_FindObjectsInit(s, nullptr, 0), CKR_OK, "C_FindObjectsInit(everything)");
    expect(f->C_FindObjectsInit(s, nullptr, 0), CKR_OPERATION_ACTIVE, "C_FindObjectsInit twice");
    expect(f->C_FindObjects(s, nullptr, 8, &n), CKR_ARGUMENTS_BAD, "C_FindObjects(NULL handles)");
    expect(f->C_FindObjects(s, h, 8, nullptr), CKR_ARGUMENTS_BAD, "C_FindObjects(NULL count)");
    expect(f->C_FindObjects(s, h, 0, &n), CKR_OK, "C_FindObjects with room for 0");
    check(n == 0, "... returns none");
    CK_ULONG total = 0;
    do {
        expect(f->C_FindObjects(s, h, 1, &n), CKR_OK, "C_FindObjects one at a time");
        total += n;
    } while (n == 1);
    check(total == 5, "five objects (ec1, rsa1, hm1 and two public keys): " + std::to_string(total));
    expect(f->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");
    // A template entry with an absurd length and a real (short) buffer never matches: no read past it.
    CK_BYTE tiny[3] = {'e', 'c', '1'};
    CK_ATTRIBUTE wrong_len{CKA_LABEL, tiny, 2};
    expect(f->C_FindObjectsInit(s, &wrong_len, 1), CKR_OK, "C_FindObjectsInit: label 'ec' (length 2)");
    expect(f->C_FindObjects(s, h, 8, &n), CKR_OK, "C_FindObjects");
    check(n == 0, "... matches nothing");
    expect(f->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");

    const CK_OBJECT_HANDLE ec = find(s, CKO_PRIVATE_KEY, "ec1");
    CK_BYTE buf[512];
    CK_ATTRIBUTE a{CKA_LABEL, buf, sizeof buf};
    expect(f->C_GetAttributeValue(s, 999999, &a, 1), CKR_OBJECT_HANDLE_INVALID, "C_GetAttributeValue of object 999999");
    expect(f->C_GetAttributeValue(s, CK_INVALID_HANDLE, &a, 1), CKR_OBJECT_HANDLE_INVALID,
           "C_GetAttributeValue of CK_INVALID_HANDLE");
    expect(f->C_GetAttributeValue(s, ec, nullptr, 1), CKR_ARGUMENTS_BAD, "C_GetAttributeValue(NULL template, 1)");
    expect(f->C_GetAttributeValue(s, ec, nullptr, 0), CKR_OK, "C_GetAttributeValue(NULL template, 0)");
    CK_ATTRIBUTE shortbuf{CKA_LABEL, buf, 2};
    expect(f->C_GetAttributeValue(s, ec, &shortbuf, 1), CKR_BUFFER_TOO_SMALL, "CKA_LABEL into 2 bytes");
    check(shortbuf.ulValueLen == CK_UNAVAILABLE_INFORMATION, "... ulValueLen = CK_UNAVAILABLE_INFORMATION");
    CK_ATTRIBUTE sizing{CKA_LABEL, nullptr, 0};
    expect(f->C_GetAttributeValue(s, ec, &sizing, 1), CKR_OK, "CKA_LABEL with a NULL buffer");
    check(sizing.ulValueLen == 3, "... length 3");
    CK_BBOOL sensitive = CK_FALSE;
    CK_ATTRIBUTE mixed[] = {
        {CKA_VALUE, buf, sizeof buf}, {CKA_SENSITIVE, &sensitive, sizeof sensitive}, {0x7fff0000UL, buf, sizeof buf}};
    const CK_RV rv = f->C_GetAttributeValue(s, ec, mixed, 3);
    check(rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID,
          "sensitive + known + unknown attribute: one of the two errors");
    check(mixed[0].ulValueLen == CK_UNAVAILABLE_INFORMATION && mixed[2].ulValueLen == CK_UNAVAILABLE_INFORMATION,
          "... the bad entries get CK_UNAVAILABLE_INFORMATION");
    check(mixed[1].ulValueLen == 1 && sensitive == CK_TRUE, "... the good entry is still filled (CKA_SENSITIVE true)");
    CK_ULONG size = 0;
    expect(f->C_GetObjectSize(s, ec, nullptr), CKR_ARGUMENTS_BAD, "C_GetObjectSize(NULL)");
    expect(f->C_GetObjectSize(s, 999999, &size), CKR_OBJECT_HANDLE_INVALID, "C_GetObjectSize of object 999999");
}

void signing(CK_SESSION_HANDLE s) {
    const CK_OBJECT_HANDLE ec = find(s, CKO_PRIVATE_KEY, "ec1");
    const CK_OBJECT_HANDLE ec_pub = find(s, CKO_PUBLIC_KEY, "ec1");
    const CK_OBJECT_HANDLE rsa = find(s, CKO_PRIVATE_KEY, "rsa1");
    const CK_OBJECT_HANDLE hm = find(s, CKO_SECRET_KEY, "hm1");
    CK_BYTE data[] = "the data";
    CK_BYTE sig[1024];
    CK_ULONG n = sizeof sig;
    CK_MECHANISM ecdsa = mech(CKM_ECDSA_SHA256);

    expect(f->C_SignInit(s, nullptr, ec), CKR_ARGUMENTS_BAD, "C_SignInit(NULL mechanism)");
    CK_MECHANISM unknown = mech(CKM_SHA1_RSA_PKCS);
    expect(f->C_SignInit(s, &unknown, rsa), CKR_MECHANISM_INVALID, "C_SignInit(CKM_SHA1_RSA_PKCS)");
    CK_MECHANISM vendor = mech(CKM_VENDOR_DEFINED + 1);
    expect(f->C_SignInit(s, &vendor, ec), CKR_MECHANISM_INVALID, "C_SignInit(vendor mechanism)");
    expect(f->C_SignInit(s, &ecdsa, 999999), CKR_KEY_HANDLE_INVALID, "C_SignInit with key 999999");
    expect(f->C_SignInit(s, &ecdsa, CK_INVALID_HANDLE), CKR_KEY_HANDLE_INVALID, "C_SignInit with CK_INVALID_HANDLE");
    expect(f->C_VerifyInit(s, &ecdsa, 999999), CKR_KEY_HANDLE_INVALID, "C_VerifyInit with key 999999");
    expect(f->C_SignInit(s, &ecdsa, ec_pub), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_SignInit with a public key");
    expect(f->C_VerifyInit(s, &ecdsa, ec), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_VerifyInit with a private key");
    expect(f->C_SignInit(s, &ecdsa, rsa), CKR_KEY_TYPE_INCONSISTENT, "C_SignInit: ECDSA with an RSA key");
    CK_MECHANISM hmac = mech(CKM_SHA256_HMAC);
    expect(f->C_SignInit(s, &hmac, ec), CKR_KEY_TYPE_INCONSISTENT, "C_SignInit: HMAC with an EC key");

    // Parameters.
    CK_BYTE junk[8] = {};
    CK_MECHANISM with_param{CKM_ECDSA_SHA256, junk, sizeof junk};
    expect(f->C_SignInit(s, &with_param, ec), CKR_MECHANISM_PARAM_INVALID, "C_SignInit: ECDSA with a parameter");
    CK_MECHANISM len_only{CKM_SHA256_HMAC, nullptr, 4};
    expect(f->C_SignInit(s, &len_only, hm), CKR_MECHANISM_PARAM_INVALID,
           "C_SignInit: HMAC with a length but no parameter");
    CK_MECHANISM pss_none{CKM_SHA256_RSA_PKCS_PSS, nullptr, 0};
    expect(f->C_SignInit(s, &pss_none, rsa), CKR_MECHANISM_PARAM_INVALID, "C_SignInit: PSS without parameters");
    CK_RSA_PKCS_PSS_PARAMS pp{CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM pss_short{CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof pp - 1};
    expect(f->C_SignInit(s, &pss_short, rsa), CKR_MECHANISM_PARAM_INVALID, "C_SignInit: PSS parameter block too short");
    CK_MECHANISM pss_null_len{CKM_SHA256_RSA_PKCS_PSS, nullptr, sizeof pp};
    expect(f->C_SignInit(s, &pss_null_len, rsa), CKR_MECHANISM_PARAM_INVALID,
           "C_SignInit: PSS length but NULL pointer");
    CK_MECHANISM pss{CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof pp};
    pp = {CKM_SHA_1, CKG_MGF1_SHA1, 20};
    expect(f->C_SignInit(s, &pss, rsa), CKR_MECHANISM_PARAM_INVALID, "C_SignInit: SHA256 PSS with SHA-1 parameters");
    pp = {CKM_SHA256, CKG_MGF1_SHA384, 32};
    expect(f->C_SignInit(s, &pss, rsa), CKR_MECHANISM_PARAM_INVALID, "C_SignInit: PSS with MGF1-SHA384 for SHA-256");
    pp = {CKM_SHA256, CKG_MGF1_SHA256, 0};
    expect(f->C_SignInit(s, &pss, rsa), CKR_MECHANISM_PARAM_INVALID, "C_SignInit: PSS with salt 0");
    pp = {0xdeadUL, CKG_MGF1_SHA256, 32};
    expect(f->C_SignInit(s, &pss, rsa), CKR_MECHANISM_PARAM_INVALID, "C_SignInit: PSS with hash 0xdead");
    pp = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    expect(f->C_SignInit(s, &pss, rsa), CKR_OK, "C_SignInit: PSS with good parameters");
    n = sizeof sig;
    expect(f->C_Sign(s, data, sizeof data, sig, &n), CKR_OK, "C_Sign (PSS)");
    check(n == 256, "... 256 bytes");

    // Operation state.
    expect(f->C_Sign(s, data, sizeof data, sig, &n), CKR_OPERATION_NOT_INITIALIZED, "C_Sign without C_SignInit");
    expect(f->C_SignUpdate(s, data, sizeof data), CKR_OPERATION_NOT_INITIALIZED, "C_SignUpdate without C_SignInit");
    expect(f->C_SignFinal(s, sig, &n), CKR_OPERATION_NOT_INITIALIZED, "C_SignFinal without C_SignInit");
    expect(f->C_Verify(s, data, sizeof data, sig, 64), CKR_OPERATION_NOT_INITIALIZED, "C_Verify without C_VerifyInit");
    expect(f->C_SignInit(s, &ecdsa, ec), CKR_OK, "C_SignInit");
    expect(f->C_SignInit(s, &ecdsa, ec), CKR_OPERATION_ACTIVE, "C_SignInit again");
    expect(f->C_Sign(s, nullptr, 5, sig, &n), CKR_ARGUMENTS_BAD, "C_Sign(NULL data, 5)");
    expect(f->C_Sign(s, data, sizeof data, sig, &n), CKR_OPERATION_NOT_INITIALIZED, "... it ended the operation");
    expect(f->C_SignInit(s, &ecdsa, ec), CKR_OK, "C_SignInit");
    expect(f->C_Sign(s, data, sizeof data, sig, nullptr), CKR_ARGUMENTS_BAD, "C_Sign(NULL length)");
    expect(f->C_SignInit(s, &ecdsa, ec), CKR_OK, "C_SignInit");
    expect(f->C_SignUpdate(s, nullptr, 3), CKR_ARGUMENTS_BAD, "C_SignUpdate(NULL, 3)");
    expect(f->C_SignInit(s, &ecdsa, ec), CKR_OK, "C_SignInit");
    expect(f->C_SignUpdate(s, data, 4), CKR_OK, "C_SignUpdate");
    expect(f->C_Sign(s, data, sizeof data, sig, &n), CKR_OPERATION_ACTIVE, "C_Sign in the middle of a multi-part sign");
    expect(f->C_SignUpdate(s, nullptr, 0), CKR_OK, "C_SignUpdate(NULL, 0)");
    n = 0;
    expect(f->C_SignFinal(s, nullptr, &n), CKR_OK, "C_SignFinal(NULL buffer)");
    check(n == 64, "... 64 bytes");
    n = 10;
    expect(f->C_SignFinal(s, sig, &n), CKR_BUFFER_TOO_SMALL, "C_SignFinal into 10 bytes");
    check(n == 64, "... says 64");
    expect(f->C_SignFinal(s, sig, &n), CKR_OK, "C_SignFinal");

    // The length convention on C_Sign.
    expect(f->C_SignInit(s, &ecdsa, ec), CKR_OK, "C_SignInit");
    n = 12345;
    expect(f->C_Sign(s, data, sizeof data, nullptr, &n), CKR_OK, "C_Sign(NULL buffer)");
    check(n == 64, "... 64 bytes");
    n = 63;
    expect(f->C_Sign(s, data, sizeof data, sig, &n), CKR_BUFFER_TOO_SMALL, "C_Sign into 63 bytes");
    check(n == 64, "... says 64");
    n = 0;
    expect(f->C_Sign(s, data, sizeof data, sig, &n), CKR_BUFFER_TOO_SMALL, "C_Sign into 0 bytes");
    n = sizeof sig;
    expect(f->C_Sign(s, data, sizeof data, sig, &n), CKR_OK, "C_Sign into 1024 bytes");
    check(n == 64, "... writes 64");
    std::vector<CK_BYTE> good(sig, sig + n);
    expect(f->C_VerifyInit(s, &ecdsa, ec_pub), CKR_OK, "C_VerifyInit");
    expect(f->C_Verify(s, data, sizeof data, good.data(), good.size()), CKR_OK, "C_Verify of that signature");
    expect(f->C_VerifyInit(s, &ecdsa, ec_pub), CKR_OK, "C_VerifyInit");
    expect(f->C_Verify(s, data, sizeof data, nullptr, 64), CKR_ARGUMENTS_BAD, "C_Verify(NULL signature)");
    expect(f->C_VerifyInit(s, &ecdsa, ec_pub), CKR_OK, "C_VerifyInit");
    expect(f->C_Verify(s, data, sizeof data, good.data(), 63), CKR_SIGNATURE_LEN_RANGE, "C_Verify of 63 bytes");
    expect(f->C_VerifyInit(s, &ecdsa, ec_pub), CKR_OK, "C_VerifyInit");
    good[5] ^= 0x40;
    expect(f->C_Verify(s, data, sizeof data, good.data(), good.size()), CKR_SIGNATURE_INVALID,
           "C_Verify of a damaged signature");

    // Single-part mechanisms refuse the multi-part calls and end the operation.
    for (CK_MECHANISM_TYPE t : {CKM_ECDSA, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS}) {
        CK_MECHANISM m{t, nullptr, 0};
        if (t == CKM_RSA_PKCS_PSS) m = {t, &pp, sizeof pp};
        const CK_OBJECT_HANDLE k = t == CKM_ECDSA ? ec : rsa;
        const std::string name = t == CKM_ECDSA ? "CKM_ECDSA" : t == CKM_RSA_PKCS ? "CKM_RSA_PKCS" : "CKM_RSA_PKCS_PSS";
        expect(f->C_SignInit(s, &m, k), CKR_OK, name + ": C_SignInit");
        expect(f->C_SignUpdate(s, data, 4), CKR_MECHANISM_INVALID, name + ": C_SignUpdate");
        expect(f->C_Sign(s, data, 4, sig, &n), CKR_OPERATION_NOT_INITIALIZED, name + ": ... ended the operation");
        expect(f->C_SignInit(s, &m, k), CKR_OK, name + ": C_SignInit");
        n = sizeof sig;
        expect(f->C_SignFinal(s, sig, &n), CKR_MECHANISM_INVALID, name + ": C_SignFinal");
    }
    // Raw input lengths.
    CK_MECHANISM raw_ec = mech(CKM_ECDSA);
    std::vector<CK_BYTE> big(600, 0x11);
    expect(f->C_SignInit(s, &raw_ec, ec), CKR_OK, "C_SignInit(CKM_ECDSA)");
    n = sizeof sig;
    expect(f->C_Sign(s, big.data(), 0, sig, &n), CKR_DATA_LEN_RANGE, "CKM_ECDSA over 0 bytes");
    expect(f->C_SignInit(s, &raw_ec, ec), CKR_OK, "C_SignInit(CKM_ECDSA)");
    n = sizeof sig;
    expect(f->C_Sign(s, big.data(), 65, sig, &n), CKR_DATA_LEN_RANGE, "CKM_ECDSA over 65 bytes");
    CK_MECHANISM raw_rsa = mech(CKM_RSA_PKCS);
    expect(f->C_SignInit(s, &raw_rsa, rsa), CKR_OK, "C_SignInit(CKM_RSA_PKCS)");
    n = sizeof sig;
    expect(f->C_Sign(s, big.data(), 246, sig, &n), CKR_DATA_LEN_RANGE, "CKM_RSA_PKCS over 246 bytes (k - 10)");
    expect(f->C_SignInit(s, &raw_rsa, rsa), CKR_OK, "C_SignInit(CKM_RSA_PKCS)");
    n = sizeof sig;
    expect(f->C_Sign(s, big.data(), 245, sig, &n), CKR_OK, "CKM_RSA_PKCS over 245 bytes (k - 11)");
    CK_MECHANISM raw_pss{CKM_RSA_PKCS_PSS, &pp, sizeof pp};
    expect(f->C_SignInit(s, &raw_pss, rsa), CKR_OK, "C_SignInit(CKM_RSA_PKCS_PSS)");
    n = sizeof sig;
    expect(f->C_Sign(s, big.data(), 31, sig, &n), CKR_DATA_LEN_RANGE, "CKM_RSA_PKCS_PSS over a 31-byte 'digest'");
    expect(f->C_SignInit(s, &hmac, hm), CKR_OK, "C_SignInit(HMAC)");
    n = sizeof sig;
    expect(f->C_Sign(s, nullptr, 0, sig, &n), CKR_OK, "HMAC over no data (NULL, 0)");
    check(n == 32, "... 32 bytes");

    // Functions the module does not offer.
    expect(f->C_EncryptInit(s, &ecdsa, ec), CKR_FUNCTION_NOT_SUPPORTED, "C_EncryptInit");
    expect(f->C_DigestInit(s, &ecdsa), CKR_FUNCTION_NOT_SUPPORTED, "C_DigestInit");
    expect(f->C_DestroyObject(s, ec), CKR_FUNCTION_NOT_SUPPORTED, "C_DestroyObject");
    expect(f->C_GetFunctionStatus(s), CKR_FUNCTION_NOT_PARALLEL, "C_GetFunctionStatus");
    expect(f->C_CancelFunction(s), CKR_FUNCTION_NOT_PARALLEL, "C_CancelFunction");
}

// Eight threads, each with its own session, sign and verify at once; a ninth
// keeps searching (which rebuilds the object table under them). keywardend
// rate-limits a credential (100 signs a second by default): a sign refused
// with CKR_FUNCTION_REJECTED is retried after a pause, as an application
// would; any other failure counts.
void threads() {
    std::atomic<int> bad{0};
    std::atomic<int> rejected{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t) {
        ts.emplace_back([t, &bad, &rejected] {
            const CK_SESSION_HANDLE s = open_session();
            const CK_OBJECT_HANDLE k =
                find(s, t % 2 == 0 ? CKO_PRIVATE_KEY : CKO_SECRET_KEY, t % 2 == 0 ? "ec1" : "hm1");
            const CK_OBJECT_HANDLE v = t % 2 == 0 ? find(s, CKO_PUBLIC_KEY, "ec1") : k;
            CK_MECHANISM m = mech(t % 2 == 0 ? CKM_ECDSA_SHA256 : CKM_SHA256_HMAC);
            for (int i = 0; i < 25; ++i) {
                std::string msg = "thread " + std::to_string(t) + " message " + std::to_string(i);
                CK_BYTE sig[64];
                CK_ULONG n = sizeof sig;
                auto* p = reinterpret_cast<CK_BYTE_PTR>(msg.data());
                CK_RV rv = CKR_FUNCTION_REJECTED;
                for (int attempt = 0; attempt < 200 && rv == CKR_FUNCTION_REJECTED; ++attempt) {
                    if (attempt > 0) {
                        ++rejected;
                        std::this_thread::sleep_for(std::chrono::milliseconds(50));
                    }
                    n = sizeof sig;
                    rv = f->C_SignInit(s, &m, k);
                    if (rv == CKR_OK) rv = f->C_Sign(s, p, msg.size(), sig, &n);
                }
                if (rv == CKR_OK) rv = f->C_VerifyInit(s, &m, v);
                if (rv == CKR_OK) rv = f->C_Verify(s, p, msg.size(), sig, n);
                if (rv != CKR_OK && bad++ == 0) {
                    std::fprintf(stderr, "thread %d message %d: 0x%lx\n", t, i, static_cast<unsigned long>(rv));
                }
            }
            if (f->C_CloseSession(s) != CKR_OK) ++bad;
        });
    }
    std::thread searcher([&] {
        const CK_SESSION_HANDLE s = open_session();
        while (!done) {
            CK_OBJECT_HANDLE h[16];
            CK_ULONG n = 0;
            CK_RV rv = f->C_FindObjectsInit(s, nullptr, 0);
            if (rv == CKR_OK) rv = f->C_FindObjects(s, h, 16, &n);
            if (rv == CKR_OK) rv = f->C_FindObjectsFinal(s);
            if (rv != CKR_OK && bad++ == 0) std::fprintf(stderr, "searcher: 0x%lx\n", static_cast<unsigned long>(rv));
        }
        f->C_CloseSession(s);
    });
    for (auto& t : ts) t.join();
    done = true;
    searcher.join();
    check(bad == 0, "8 threads x 25 sign+verify alongside a searching thread: " + std::to_string(bad.load()) +
                        " failures (" + std::to_string(rejected.load()) + " rate-limit retries)");
}

void after_finalize(CK_SESSION_HANDLE s) {
    expect(f->C_Finalize(nullptr), CKR_OK, "C_Finalize with open sessions");
    CK_MECHANISM m = mech(CKM_ECDSA_SHA256);
    CK_BYTE buf[64];
    CK_ULONG n = sizeof buf;
    CK_SESSION_INFO si;
    expect(f->C_GetSessionInfo(s, &si), CKR_CRYPTOKI_NOT_INITIALIZED, "C_GetSessionInfo after C_Finalize");
    expect(f->C_SignInit(s, &m, 1), CKR_CRYPTOKI_NOT_INITIALIZED, "C_SignInit after C_Finalize");
    expect(f->C_Sign(s, buf, 4, buf, &n), CKR_CRYPTOKI_NOT_INITIALIZED, "C_Sign after C_Finalize");
    expect(f->C_CloseSession(s), CKR_CRYPTOKI_NOT_INITIALIZED, "C_CloseSession after C_Finalize");
    expect(f->C_GetMechanismList(1, nullptr, &n), CKR_CRYPTOKI_NOT_INITIALIZED, "C_GetMechanismList after C_Finalize");
    expect(f->C_Finalize(nullptr), CKR_CRYPTOKI_NOT_INITIALIZED, "C_Finalize twice");
    expect(f->C_Initialize(nullptr), CKR_OK, "C_Initialize again");
    expect(f->C_GetSessionInfo(s, &si), CKR_SESSION_HANDLE_INVALID, "the old session is gone");
    const CK_SESSION_HANDLE s2 = open_session();
    expect(f->C_SignInit(s2, &m, 1), CKR_USER_NOT_LOGGED_IN, "a new session is not logged in");
    expect(f->C_CloseAllSessions(1), CKR_OK, "C_CloseAllSessions");
    expect(f->C_GetSessionInfo(s2, &si), CKR_SESSION_HANDLE_INVALID, "... closed it");
    expect(f->C_Finalize(nullptr), CKR_OK, "C_Finalize");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: pkcs11_abuse MODULE API_TOKEN_FILE\n");
        return 2;
    }
    std::string token;
    std::ifstream(argv[2]) >> token;
    if (token.empty()) fail(std::string("no API token in ") + argv[2]);
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) fail(std::string("dlopen: ") + dlerror());
    auto get = reinterpret_cast<CK_C_GetFunctionList>(dlsym(lib, "C_GetFunctionList"));
    check(get != nullptr, "the module exports C_GetFunctionList");
    check(dlsym(lib, "C_Initialize") == nullptr && dlsym(lib, "C_Sign") == nullptr,
          "... and not C_Initialize or C_Sign");
    expect(get(nullptr), CKR_ARGUMENTS_BAD, "C_GetFunctionList(NULL)");
    expect(get(&f), CKR_OK, "C_GetFunctionList");
    check(f->version.major == 2 && f->version.minor == 40, "function list version 2.40");

    before_initialize();
    slot_and_token();
    unknown_sessions();
    const CK_SESSION_HANDLE s = open_session();
    sessions_and_login(s, token);
    objects(s);
    signing(s);
    threads();
    after_finalize(s);
    dlclose(lib);
    std::printf("pkcs11_abuse: all %d checks passed\n", checks);
    return 0;
}
