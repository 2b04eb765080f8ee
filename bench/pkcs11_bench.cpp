// Signs through any PKCS#11 module for a while and reports signatures per
// second: the same loop measures SoftHSM directly (the baseline) and
// libkeywarden-pkcs11.so (the face), so their ratio is the module's cost.
//
//   pkcs11_bench MODULE LABEL ecdsa|hmac SECONDS THREADS
//
// The PIN (SoftHSM user PIN, or a keywarden API token for our module) comes
// from the environment variable BENCH_PIN, never from argv. Each thread has
// its own session and signs a 32-byte message with CKM_ECDSA_SHA256 (hashed
// here for SoftHSM, which lacks it: CKM_ECDSA over a SHA-256 digest) or
// CKM_SHA256_HMAC. One JSON line on stdout.
#include <dlfcn.h>
#include <openssl/sha.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "token/pkcs11.hpp"

namespace {

[[noreturn]] void die(const std::string& what, CK_RV rv) {
    std::fprintf(stderr, "pkcs11_bench: %s failed: 0x%lx\n", what.c_str(), rv);
    // _Exit, not exit: other threads are still inside the module, and
    // running static destructors under them turns one error into several.
    std::_Exit(1);
}

void check(const char* what, CK_RV rv) {
    if (rv != CKR_OK) die(what, rv);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: pkcs11_bench MODULE LABEL ecdsa|hmac SECONDS THREADS (PIN in BENCH_PIN)\n");
        return 2;
    }
    const std::string label = argv[2];
    const bool ecdsa = std::string(argv[3]) == "ecdsa";
    const double seconds = std::strtod(argv[4], nullptr);
    const int threads = static_cast<int>(std::strtol(argv[5], nullptr, 10));
    if (seconds <= 0 || threads <= 0) {
        std::fprintf(stderr, "SECONDS and THREADS must be positive numbers\n");
        return 2;
    }
    const char* pin = std::getenv("BENCH_PIN");
    if (pin == nullptr) {
        std::fprintf(stderr, "pkcs11_bench: set BENCH_PIN\n");
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        std::fprintf(stderr, "pkcs11_bench: %s\n", dlerror());
        return 1;
    }
    auto get = reinterpret_cast<CK_C_GetFunctionList>(dlsym(lib, "C_GetFunctionList"));
    CK_FUNCTION_LIST_PTR f = nullptr;
    check("C_GetFunctionList", get(&f));
    CK_C_INITIALIZE_ARGS init{};
    init.flags = CKF_OS_LOCKING_OK;
    check("C_Initialize", f->C_Initialize(&init));
    CK_SLOT_ID slots[8];
    CK_ULONG nslots = 8;
    check("C_GetSlotList", f->C_GetSlotList(CK_TRUE, slots, &nslots));
    if (nslots == 0) die("no slot with a token", 0);

    // Login once (the login state is the application's); each thread then
    // opens its own session and finds the key the same way.
    CK_SESSION_HANDLE login_session = 0;
    check("C_OpenSession", f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, nullptr, nullptr, &login_session));
    check("C_Login", f->C_Login(login_session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin)),
                                std::strlen(pin)));

    std::atomic<bool> go{false};
    std::atomic<bool> stop{false};
    std::atomic<long> total{0};
    std::vector<std::thread> workers;
    workers.reserve(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&] {
            CK_SESSION_HANDLE s = 0;
            check("C_OpenSession", f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, nullptr, nullptr, &s));
            CK_OBJECT_CLASS cls = ecdsa ? CKO_PRIVATE_KEY : CKO_SECRET_KEY;
            CK_ATTRIBUTE templ[] = {{CKA_CLASS, &cls, sizeof cls},
                                    {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
            check("C_FindObjectsInit", f->C_FindObjectsInit(s, templ, 2));
            CK_OBJECT_HANDLE key = 0;
            CK_ULONG found = 0;
            check("C_FindObjects", f->C_FindObjects(s, &key, 1, &found));
            check("C_FindObjectsFinal", f->C_FindObjectsFinal(s));
            if (found != 1) die("finding key " + label, 0);
            // SoftHSM has no CKM_ECDSA_SHA256: probe once, fall back to hashing here.
            CK_MECHANISM mech{ecdsa ? CKM_ECDSA_SHA256 : CKM_SHA256_HMAC, nullptr, 0};
            bool hash_here = false;
            if (ecdsa && f->C_SignInit(s, &mech, key) == CKR_MECHANISM_INVALID) {
                mech.mechanism = CKM_ECDSA;
                hash_here = true;
            } else if (ecdsa) {
                CK_BYTE sig[128];
                CK_ULONG len = sizeof sig;
                CK_BYTE data[1] = {0};
                check("C_Sign", f->C_Sign(s, data, 1, sig, &len));
            }
            CK_BYTE message[32];
            std::memset(message, 0x5a, sizeof message);
            while (!go) std::this_thread::yield();
            long n = 0;
            while (!stop) {
                CK_BYTE input[32];
                CK_ULONG input_len = sizeof message;
                if (hash_here) {
                    SHA256(message, sizeof message, input);  // what the module does for CKM_ECDSA_SHA256
                } else {
                    std::memcpy(input, message, sizeof message);
                }
                CK_BYTE sig[128];
                CK_ULONG len = sizeof sig;
                check("C_SignInit", f->C_SignInit(s, &mech, key));
                check("C_Sign", f->C_Sign(s, input, input_len, sig, &len));
                ++n;
            }
            total += n;
            f->C_CloseSession(s);
        });
    }
    go = true;
    const auto start = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& w : workers) w.join();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    f->C_Logout(login_session);
    f->C_CloseSession(login_session);
    f->C_Finalize(nullptr);
    std::printf(
        "{\"label\": \"%s\", \"mechanism\": \"%s\", \"threads\": %d, \"ops\": %ld, \"seconds\": %.3f, "
        "\"ops_per_s\": %.1f}\n",
        label.c_str(), ecdsa ? "ECDSA-SHA256" : "SHA256-HMAC", threads, total.load(), elapsed,
        static_cast<double>(total.load()) / elapsed);
    return 0;
}
