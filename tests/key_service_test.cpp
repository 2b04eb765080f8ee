// Integration tests of KeyService over a real SoftHSM token (tests/with-token.sh),
// a SQLite store and the audit log, with a FakeClock for expiry.
//
// Asymmetric signatures are also checked with OpenSSL directly against the
// exported PEM, so a bug shared by the service's sign and verify paths
// cannot hide.
#include "core/key_service.hpp"

#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/audit/keys.hpp"
#include "core/audit/log.hpp"
#include "core/audit/sqlite_sink.hpp"
#include "core/clock.hpp"
#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/root_keys.hpp"
#include "core/store/store.hpp"
#include "token/error.hpp"
#include "token/token.hpp"

using namespace kw::core;
using kw::token::SignMechanism;

namespace {

constexpr UnixTime kStart = 1'700'000'000;

std::string env_or_fail(const char* name) {
    const char* v = std::getenv(name);
    REQUIRE_MESSAGE(v != nullptr, name << " is not set: run through tests/with-token.sh");
    return v;
}

std::string fresh_store_path(const std::string& name) {
    static int counter = 0;
    std::string p = env_or_fail("KW_TEST_DIR") + "/ks-" + name + "-" + std::to_string(++counter) + ".db";
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(p + suffix);
    return p;
}

// Everything a KeyService needs, opened in order and closed in reverse (the
// token last, so sessions close before the module finalises).
struct Stack {
    std::unique_ptr<kw::token::Token> token;
    std::unique_ptr<Store> store;
    RootKeys roots;
    std::unique_ptr<audit::SqliteSink> sink;
    std::unique_ptr<audit::Keys> audit_keys;
    std::unique_ptr<audit::Log> log;
    std::unique_ptr<KeyService> svc;

    Stack(const std::string& store_path, const Clock& clock) {
        kw::token::TokenConfig tc;
        tc.module_path = env_or_fail("KEYWARDEN_HSM_MODULE");
        tc.selector.label = env_or_fail("KEYWARDEN_TOKEN_LABEL");
        tc.sessions = 2;
        token = std::make_unique<kw::token::Token>(tc);
        token->login(kw::token::SecretString(env_or_fail("KEYWARDEN_PIN")));
        (void)init_root_keys(*token);  // idempotent: creates only what is missing
        roots = load_root_keys(*token);
        store = open_store("sqlite:" + store_path);
        sink = std::make_unique<audit::SqliteSink>(store_path, audit::Durability::process);
        audit_keys = std::make_unique<audit::Keys>(*token, roots);
        log = std::make_unique<audit::Log>(*sink, *audit_keys, clock);
        svc = std::make_unique<KeyService>(*token, *store, roots, clock, *log, "test:key_service");
    }
    ~Stack() {
        svc.reset();
        log.reset();
        audit_keys.reset();
        sink.reset();
        store.reset();
        token.reset();
    }
    Stack(const Stack&) = delete;
    Stack& operator=(const Stack&) = delete;

    KeyService& operator*() { return *svc; }
    KeyService* operator->() { return svc.get(); }
};

template <typename F>
ErrorKind kind_thrown(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.kind();
    }
    FAIL("no kw::core::Error thrown");
    return ErrorKind::store_failure;
}

std::vector<std::uint8_t> bytes(const std::string& s) {
    return {s.begin(), s.end()};
}

std::vector<std::uint8_t> flipped(std::vector<std::uint8_t> v, std::size_t i) {
    v.at(i) ^= 0x01;
    return v;
}

// ECDSA r||s -> DER, written here with OpenSSL rather than with core's helper.
std::vector<std::uint8_t> raw_to_der(const std::vector<std::uint8_t>& raw) {
    const std::size_t half = raw.size() / 2;
    ECDSA_SIG* sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(raw.data(), static_cast<int>(half), nullptr),
                   BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr));
    int len = i2d_ECDSA_SIG(sig, nullptr);
    std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
    unsigned char* p = der.data();
    i2d_ECDSA_SIG(sig, &p);
    ECDSA_SIG_free(sig);
    return der;
}

// Verifies with OpenSSL and the PEM the service exported. ECDSA wants DER.
bool openssl_verify(const std::string& pem, SignMechanism m, const std::vector<std::uint8_t>& data,
                    const std::vector<std::uint8_t>& sig) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    REQUIRE_MESSAGE(key != nullptr, "PEM does not parse: " << pem);
    const EVP_MD* md = nullptr;
    bool pss = false;
    switch (m) {
        case SignMechanism::rsa_pkcs1_sha256:
        case SignMechanism::ecdsa_sha256: md = EVP_sha256(); break;
        case SignMechanism::ecdsa_sha384: md = EVP_sha384(); break;
        case SignMechanism::rsa_pss_sha256:
            md = EVP_sha256();
            pss = true;
            break;
        case SignMechanism::eddsa: md = nullptr; break;
        default: FAIL("unexpected mechanism " << kw::token::to_string(m));
    }
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    int rc = EVP_DigestVerifyInit(ctx, &pctx, md, nullptr, key);
    if (rc == 1 && pss) {
        rc = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1
                 ? 1
                 : 0;
    }
    if (rc == 1) rc = EVP_DigestVerify(ctx, sig.data(), sig.size(), data.data(), data.size());
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc == 1;
}

GenerateRequest request(const std::string& name, KeyType type) {
    GenerateRequest r;
    r.name = name;
    r.type = type;
    return r;
}

struct TypeCase {
    const char* name;
    KeyType type;
    unsigned rsa_bits;
    std::optional<Curve> curve;
    std::optional<JwtAlg> jwt_alg;
    SignMechanism mechanism;
    Residency residency;
    bool asymmetric;
};

}  // namespace

TEST_CASE("every key type generates, signs and verifies through the service") {
    FakeClock clock(kStart);
    Stack st(fresh_store_path("types"), clock);
    const TypeCase cases[] = {
        {"hmac-1", KeyType::hmac, 0, {}, {}, SignMechanism::hmac_sha256, Residency::wrapped, false},
        {"rsa-1", KeyType::rsa, 2048, {}, {}, SignMechanism::rsa_pkcs1_sha256, Residency::wrapped, true},
        {"ec-p256", KeyType::ecdsa, 0, Curve::p256, {}, SignMechanism::ecdsa_sha256, Residency::wrapped, true},
        {"ec-p384", KeyType::ecdsa, 0, Curve::p384, {}, SignMechanism::ecdsa_sha384, Residency::wrapped, true},
        // SoftHSM 2.6 cannot wrap Ed25519: falls back to token residency.
        {"ed-1", KeyType::ed25519, 0, {}, {}, SignMechanism::eddsa, Residency::token, true},
        {"jwt-hs256", KeyType::jwt, 0, {}, JwtAlg::HS256, SignMechanism::hmac_sha256, Residency::wrapped, false},
        {"jwt-rs256", KeyType::jwt, 0, {}, JwtAlg::RS256, SignMechanism::rsa_pkcs1_sha256, Residency::wrapped, true},
        {"jwt-ps256", KeyType::jwt, 0, {}, JwtAlg::PS256, SignMechanism::rsa_pss_sha256, Residency::wrapped, true},
        {"jwt-es256", KeyType::jwt, 0, {}, JwtAlg::ES256, SignMechanism::ecdsa_sha256, Residency::wrapped, true},
        {"jwt-eddsa", KeyType::jwt, 0, {}, JwtAlg::EdDSA, SignMechanism::eddsa, Residency::token, true},
    };
    const auto data = bytes("the quick brown fox signs the lazy dog");
    for (const auto& c : cases) {
        INFO("key " << c.name);
        GenerateRequest r = request(c.name, c.type);
        if (c.rsa_bits != 0) r.rsa_bits = c.rsa_bits;
        r.curve = c.curve;
        r.jwt_alg = c.jwt_alg;
        r.scopes = {"sign:test"};
        r.owner = "team-test";
        r.labels = {{"case", c.name}};
        ManagedKey k = st->generate(r);
        CHECK(k.name == c.name);
        CHECK(k.type == c.type);
        CHECK(k.created_at == kStart);
        CHECK(k.id.size() == 36);
        REQUIRE(k.versions.size() == 1);
        const KeyVersion& v = k.versions[0];
        CHECK(v.primary);
        CHECK(v.version == 1);
        CHECK(v.state == VersionState::active);
        CHECK(v.kid.size() == 13);
        CHECK(v.residency == c.residency);
        CHECK(v.wrapped_blob.empty() == (c.residency == Residency::token));
        CHECK(v.public_key.empty() == !c.asymmetric);
        CHECK(KeyService::mechanism_for(k, {}) == c.mechanism);
        if (c.jwt_alg == JwtAlg::ES256) CHECK(k.curve == Curve::p256);
        if (c.jwt_alg == JwtAlg::RS256 || c.jwt_alg == JwtAlg::PS256) CHECK(k.rsa_bits == 2048);

        // What the store has is what generate returned.
        ManagedKey stored = st->get(c.name);
        CHECK(stored.id == k.id);
        CHECK(stored.scopes == r.scopes);
        CHECK(stored.owner == "team-test");
        CHECK(stored.labels == r.labels);
        REQUIRE(stored.primary() != nullptr);
        CHECK(stored.primary()->kid == v.kid);
        CHECK(stored.primary()->wrapped_blob == v.wrapped_blob);
        CHECK(stored.primary()->public_key == v.public_key);

        const auto before = std::chrono::steady_clock::now();
        SignResult s = st->sign(c.name, data);
        const double whole = std::chrono::duration<double>(std::chrono::steady_clock::now() - before).count();
        // The token's share of the call, not the whole call (audit, lookup).
        CHECK(s.hsm_seconds > 0);
        CHECK(s.hsm_seconds < whole);
        CHECK(s.kid == v.kid);
        CHECK(s.version == 1);
        CHECK(s.mechanism == c.mechanism);
        REQUIRE_FALSE(s.signature.empty());
        auto ok = st->verify(c.name, data, s.signature);
        CHECK(ok.valid);
        CHECK(ok.kid == v.kid);
        CHECK(st->verify(c.name, data, s.signature, {}, v.kid).valid);
        CHECK_FALSE(st->verify(c.name, data, s.signature, {}, std::string_view("no-such-kid")).valid);
        CHECK_FALSE(st->verify(c.name, flipped(data, 0), s.signature).valid);
        CHECK_FALSE(st->verify(c.name, data, flipped(s.signature, s.signature.size() / 2)).valid);

        if (c.asymmetric) {
            const std::string pem = st->public_key_pem(c.name);
            CHECK(pem.rfind("-----BEGIN PUBLIC KEY-----\n", 0) == 0);
            CHECK(st->public_key_pem(c.name, std::string_view(v.kid)) == pem);
            CHECK(openssl_verify(pem, c.mechanism, data, s.signature));
            CHECK_FALSE(openssl_verify(pem, c.mechanism, flipped(data, 1), s.signature));
        } else {
            CHECK(s.signature.size() == 32);
            // HMAC is deterministic.
            CHECK(st->sign(c.name, data).signature == s.signature);
        }
    }
    CHECK(st->list().size() == std::size(cases));
}

TEST_CASE("RSA padding: PKCS#1 by default, PSS on request; JWT algs fix the padding") {
    FakeClock clock(kStart);
    Stack st(fresh_store_path("rsa"), clock);
    const auto data = bytes("padding matters");
    (void)st->generate(request("rsa", KeyType::rsa));
    SignOptions pss;
    pss.rsa_padding = RsaPadding::pss;
    auto a = st->sign("rsa", data);
    auto b = st->sign("rsa", data, pss);
    CHECK(a.mechanism == SignMechanism::rsa_pkcs1_sha256);
    CHECK(b.mechanism == SignMechanism::rsa_pss_sha256);
    CHECK(st->sign("rsa", data).signature == a.signature);       // PKCS#1 v1.5 is deterministic
    CHECK(st->sign("rsa", data, pss).signature != b.signature);  // PSS is salted
    CHECK(st->verify("rsa", data, a.signature).valid);
    CHECK(st->verify("rsa", data, b.signature, pss).valid);
    CHECK_FALSE(st->verify("rsa", data, b.signature).valid);  // PSS signature is not PKCS#1
    CHECK_FALSE(st->verify("rsa", data, a.signature, pss).valid);
    const std::string pem = st->public_key_pem("rsa");
    CHECK(openssl_verify(pem, SignMechanism::rsa_pss_sha256, data, b.signature));
    CHECK_FALSE(openssl_verify(pem, SignMechanism::rsa_pkcs1_sha256, data, b.signature));

    GenerateRequest rs = request("jwt-rs", KeyType::jwt);
    rs.jwt_alg = JwtAlg::RS256;
    (void)st->generate(rs);
    CHECK(st->sign("jwt-rs", data, pss).mechanism == SignMechanism::rsa_pkcs1_sha256);
    GenerateRequest ps = request("jwt-ps", KeyType::jwt);
    ps.jwt_alg = JwtAlg::PS256;
    ps.rsa_bits = 3072;
    ManagedKey k = st->generate(ps);
    CHECK(k.rsa_bits == 3072);
    auto s = st->sign("jwt-ps", data);
    CHECK(s.mechanism == SignMechanism::rsa_pss_sha256);
    CHECK(s.signature.size() == 384);
    CHECK(openssl_verify(st->public_key_pem("jwt-ps"), SignMechanism::rsa_pss_sha256, data, s.signature));
}

TEST_CASE("ECDSA signatures come as DER (default) or raw r||s and both verify") {
    FakeClock clock(kStart);
    Stack st(fresh_store_path("ecdsa"), clock);
    const auto data = bytes("ecdsa formats");
    const std::pair<Curve, std::size_t> curves[] = {{Curve::p256, 32}, {Curve::p384, 48}};
    for (auto [curve, field] : curves) {
        const std::string name = curve == Curve::p256 ? "ec256" : "ec384";
        INFO(name);
        GenerateRequest r = request(name, KeyType::ecdsa);
        r.curve = curve;
        (void)st->generate(r);
        const auto mech = curve == Curve::p256 ? SignMechanism::ecdsa_sha256 : SignMechanism::ecdsa_sha384;
        const std::string pem = st->public_key_pem(name);

        auto der = st->sign(name, data);
        REQUIRE(der.signature.size() > 2 * field);
        CHECK(der.signature[0] == 0x30);  // SEQUENCE
        CHECK(st->verify(name, data, der.signature).valid);
        CHECK(openssl_verify(pem, mech, data, der.signature));

        SignOptions raw_opt;
        raw_opt.format = SignatureFormat::raw;
        auto raw = st->sign(name, data, raw_opt);
        CHECK(raw.signature.size() == 2 * field);
        CHECK(st->verify(name, data, raw.signature, raw_opt).valid);
        CHECK(st->verify(name, data, raw.signature).valid);  // the format is recognised by length
        CHECK(openssl_verify(pem, mech, data, raw_to_der(raw.signature)));
        CHECK_FALSE(st->verify(name, data, flipped(raw.signature, 5)).valid);
        CHECK_FALSE(st->verify(name, bytes("other data"), der.signature).valid);
    }
}

TEST_CASE("wrapped keys are reloaded from the store after a restart") {
    FakeClock clock(kStart);
    const std::string path = fresh_store_path("restart");
    const auto data = bytes("signed before the restart");
    std::vector<std::uint8_t> hmac_sig, ec_sig, rsa_sig, blob;
    std::string hmac_kid;
    {
        Stack st(path, clock);
        (void)st->generate(request("h", KeyType::hmac));
        GenerateRequest e = request("e", KeyType::ecdsa);
        e.curve = Curve::p256;
        (void)st->generate(e);
        (void)st->generate(request("r", KeyType::rsa));
        hmac_sig = st->sign("h", data).signature;
        ec_sig = st->sign("e", data).signature;
        rsa_sig = st->sign("r", data).signature;
        hmac_kid = st->get("h").primary()->kid;
        blob = st->get("h").primary()->wrapped_blob;
        CHECK(st->cached_handles() == 3);
    }
    // Everything new: token (library re-initialised, session objects gone),
    // store object, root keys, audit log, service.
    Stack st(path, clock);
    CHECK(st->cached_handles() == 0);
    CHECK(st->get("h").primary()->wrapped_blob == blob);
    CHECK(st->verify("h", data, hmac_sig).valid);
    CHECK(st->verify("h", data, hmac_sig).kid == hmac_kid);
    CHECK(st->verify("e", data, ec_sig).valid);
    CHECK(st->verify("r", data, rsa_sig).valid);
    // Same key material: HMAC and PKCS#1 signatures are identical.
    CHECK(st->sign("h", data).signature == hmac_sig);
    CHECK(st->sign("r", data).signature == rsa_sig);
    auto fresh = st->sign("e", bytes("signed after the restart"));
    CHECK(st->verify("e", bytes("signed after the restart"), fresh.signature).valid);
    CHECK(openssl_verify(st->public_key_pem("e"), SignMechanism::ecdsa_sha256, bytes("signed after the restart"),
                         fresh.signature));
    CHECK(st->cached_handles() == 3);
}

TEST_CASE("token-residency keys survive a restart") {
    FakeClock clock(kStart);
    const std::string path = fresh_store_path("token-res");
    const auto data = bytes("token residency");
    std::vector<std::uint8_t> hmac_sig, ec_sig, ed_sig;
    {
        Stack st(path, clock);
        GenerateRequest h = request("th", KeyType::hmac);
        h.residency = Residency::token;
        GenerateRequest e = request("te", KeyType::ecdsa);
        e.residency = Residency::token;
        GenerateRequest d = request("td", KeyType::ed25519);  // wrapped asked, falls back to token
        for (auto* r : {&h, &e, &d}) {
            ManagedKey k = st->generate(*r);
            CHECK(k.versions[0].residency == Residency::token);
            CHECK(k.versions[0].wrapped_blob.empty());
        }
        hmac_sig = st->sign("th", data).signature;
        ec_sig = st->sign("te", data).signature;
        ed_sig = st->sign("td", data).signature;
    }
    Stack st(path, clock);
    CHECK(st->verify("th", data, hmac_sig).valid);
    CHECK(st->verify("te", data, ec_sig).valid);
    CHECK(st->verify("td", data, ed_sig).valid);
    CHECK(st->sign("th", data).signature == hmac_sig);
    CHECK(st->sign("td", data).signature == ed_sig);  // Ed25519 is deterministic
    auto again = st->sign("te", data);
    CHECK(st->verify("te", data, again.signature).valid);
    CHECK(openssl_verify(st->public_key_pem("te"), SignMechanism::ecdsa_sha256, data, again.signature));
}

TEST_CASE("revoked keys stop signing; their old signatures still verify") {
    FakeClock clock(kStart);
    Stack st(fresh_store_path("revoke"), clock);
    const auto data = bytes("before revocation");
    (void)st->generate(request("rh", KeyType::hmac));
    GenerateRequest e = request("re", KeyType::ecdsa);
    (void)st->generate(e);
    auto hs = st->sign("rh", data);
    auto es = st->sign("re", data);
    clock.advance(60);
    st->revoke("rh", "test revocation");
    st->revoke("re");
    for (const char* name : {"rh", "re"}) {
        INFO(name);
        try {
            (void)st->sign(name, data);
            FAIL("a revoked key signed");
        } catch (const Error& err) {
            CHECK(err.kind() == ErrorKind::not_permitted);
            CHECK(std::string(err.what()).find("revoked") != std::string::npos);
        }
        ManagedKey k = st->get(name);
        CHECK(k.revoked_at == kStart + 60);
        CHECK(k.primary()->state == VersionState::deactivated);
        CHECK(kind_thrown([&] { st->revoke(name); }) == ErrorKind::not_permitted);  // already revoked
    }
    CHECK(st->verify("rh", data, hs.signature).valid);
    CHECK(st->verify("re", data, es.signature).valid);
    auto history = st.store->state_history(st->get("rh").id);
    REQUIRE(history.size() == 1);
    CHECK(history[0].to == VersionState::deactivated);
    CHECK(history[0].reason == "test revocation");
    CHECK(history[0].actor == "test:key_service");

    // The refusal is in the audit log.
    st.log.reset();  // drain
    audit::Query q;
    q.key = "rh";
    bool denied = false;
    for (const auto& ev : st.sink->query(q)) {
        if (ev.operation == "sign" && ev.outcome == "denied") denied = true;
    }
    CHECK(denied);
}

TEST_CASE("expiry is enforced at use time with the service's clock") {
    FakeClock clock(kStart);
    Stack st(fresh_store_path("expiry"), clock);
    const auto data = bytes("expiring");
    GenerateRequest r = request("short-lived", KeyType::hmac);
    r.expires_in = 3600;
    ManagedKey k = st->generate(r);
    REQUIRE(k.expires_at.has_value());
    CHECK(*k.expires_at == kStart + 3600);
    CHECK(st->get("short-lived").expires_at == kStart + 3600);
    auto sig = st->sign("short-lived", data);
    clock.advance(3599);
    CHECK_NOTHROW((void)st->sign("short-lived", data));
    clock.advance(1);
    try {
        (void)st->sign("short-lived", data);
        FAIL("an expired key signed");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::not_permitted);
        CHECK(std::string(e.what()).find("expired") != std::string::npos);
    }
    clock.advance(86400);
    CHECK(kind_thrown([&] { (void)st->sign("short-lived", data); }) == ErrorKind::not_permitted);
    CHECK(st->verify("short-lived", data, sig.signature).valid);
    // A key without expiry is unaffected by the clock.
    (void)st->generate(request("forever", KeyType::hmac));
    clock.advance(10LL * 365 * 86400);
    CHECK_NOTHROW((void)st->sign("forever", data));
}

TEST_CASE("errors: unknown key, duplicate name, bad names and sizes") {
    FakeClock clock(kStart);
    Stack st(fresh_store_path("errors"), clock);
    const auto data = bytes("x");

    SUBCASE("unknown key -> not_found") {
        CHECK(kind_thrown([&] { (void)st->sign("ghost", data); }) == ErrorKind::not_found);
        CHECK(kind_thrown([&] { (void)st->verify("ghost", data, data); }) == ErrorKind::not_found);
        CHECK(kind_thrown([&] { (void)st->public_key_pem("ghost"); }) == ErrorKind::not_found);
        CHECK(kind_thrown([&] { (void)st->get("ghost"); }) == ErrorKind::not_found);
        CHECK(kind_thrown([&] { (void)st->describe("ghost"); }) == ErrorKind::not_found);
        CHECK(kind_thrown([&] { st->revoke("ghost"); }) == ErrorKind::not_found);
    }
    SUBCASE("duplicate name -> already_exists; the original is untouched") {
        ManagedKey first = st->generate(request("taken", KeyType::hmac));
        auto sig = st->sign("taken", data);
        CHECK(kind_thrown([&] { (void)st->generate(request("taken", KeyType::ecdsa)); }) == ErrorKind::already_exists);
        ManagedKey now = st->get("taken");
        CHECK(now.id == first.id);
        CHECK(now.type == KeyType::hmac);
        CHECK(now.versions.size() == 1);
        CHECK(st->sign("taken", data).signature == sig.signature);
        CHECK(st->list().size() == 1);
    }
    SUBCASE("invalid requests -> invalid_argument, nothing stored") {
        for (const std::string& bad : {std::string(), std::string("has space"), std::string("semi;colon"),
                                       std::string("quote'"), std::string("new\nline"), std::string(129, 'a')}) {
            INFO("name '" << bad << "'");
            CHECK(kind_thrown([&] { (void)st->generate(request(bad, KeyType::hmac)); }) == ErrorKind::invalid_argument);
        }
        ManagedKey ok = st->generate(request(std::string(128, 'b'), KeyType::hmac));  // 128 is the limit
        CHECK(ok.name.size() == 128);
        (void)st->generate(request("ok-name_1.2/x:y", KeyType::hmac));

        for (unsigned bits : {0U, 1024U, 2047U, 8192U}) {
            INFO("rsa bits " << bits);
            GenerateRequest r = request("rsa-bad", KeyType::rsa);
            r.rsa_bits = bits;
            CHECK(kind_thrown([&] { (void)st->generate(r); }) == ErrorKind::invalid_argument);
        }
        GenerateRequest exp = request("exp-bad", KeyType::hmac);
        exp.expires_in = 0;
        CHECK(kind_thrown([&] { (void)st->generate(exp); }) == ErrorKind::invalid_argument);
        exp.expires_in = -5;
        CHECK(kind_thrown([&] { (void)st->generate(exp); }) == ErrorKind::invalid_argument);
        CHECK(kind_thrown([&] { (void)st->generate(request("tok", KeyType::api_token)); }) ==
              ErrorKind::invalid_argument);

        // Explicitly wrapped Ed25519 (no fallback) cannot be made on SoftHSM.
        GenerateRequest ed = request("ed-wrapped", KeyType::ed25519);
        ed.residency = Residency::wrapped;
        ed.allow_token_fallback = false;
        try {
            (void)st->generate(ed);
            FAIL("SoftHSM wrapped an Ed25519 key (update this test if it now can)");
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::invalid_argument);
            CHECK(std::string(e.what()).find("CKR_KEY_NOT_WRAPPABLE") != std::string::npos);
        }
        auto names = st->list();
        CHECK(names.size() == 2);
        CHECK_FALSE(st.store->find_key("rsa-bad").has_value());
        CHECK_FALSE(st.store->find_key("ed-wrapped").has_value());
    }
}

TEST_CASE("public_key_pem: HMAC keys have none; unknown versions are not_found") {
    FakeClock clock(kStart);
    Stack st(fresh_store_path("pem"), clock);
    (void)st->generate(request("mac", KeyType::hmac));
    GenerateRequest hs = request("jwt-mac", KeyType::jwt);
    hs.jwt_alg = JwtAlg::HS256;
    (void)st->generate(hs);
    for (const char* name : {"mac", "jwt-mac"}) {
        INFO(name);
        try {
            (void)st->public_key_pem(name);
            FAIL("an HMAC key exported a public key");
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::invalid_argument);
        }
    }
    (void)st->generate(request("ed", KeyType::ed25519));
    CHECK(st->public_key_pem("ed").find("BEGIN PUBLIC KEY") != std::string::npos);
    CHECK(kind_thrown([&] { (void)st->public_key_pem("ed", std::string_view("not-a-kid")); }) == ErrorKind::not_found);
}
