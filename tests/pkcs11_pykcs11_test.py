#!/usr/bin/python3
"""libkeywarden-pkcs11.so driven by PyKCS11 (an outside client).

    /usr/bin/python3 tests/pkcs11_pykcs11_test.py KEYWARDEND HSM_KEYTOOL MODULE

Run by tests/pkcs11_pykcs11_test.sh, which has made the keys, the API
tokens (app.token: scope pkcs11; ro.token: scope read_only; short.token:
expired) and the PEM files in the current directory ($KW_TEST_DIR). This
program owns keywardend (it stops and restarts it to check that the same
module instance recovers).

Signatures are checked twice: by the module's C_Verify against the public
key objects (or the secret key for HMAC) and by the openssl CLI against the
PEMs from `hsm-keytool public-key`. One line per check; stops at the first
failure.

PyKCS11 holds the GIL across PKCS#11 calls, so its "8 threads" interleave
whole calls rather than run them in parallel (tests/pkcs11_abuse.cpp has the
truly parallel version).
"""
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import PyKCS11
from PyKCS11 import LowLevel
from PyKCS11.LowLevel import (CKA_CLASS, CKA_EC_PARAMS, CKA_EC_POINT, CKA_EXTRACTABLE, CKA_ID, CKA_KEY_TYPE, CKA_LABEL,
                              CKA_MODULUS, CKA_PRIVATE_EXPONENT, CKA_PUBLIC_EXPONENT, CKA_PUBLIC_KEY_INFO, CKA_SENSITIVE,
                              CKA_SIGN, CKA_VALUE, CKF_SERIAL_SESSION, CKF_SIGN, CKF_TOKEN_PRESENT, CKF_VERIFY,
                              CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY, CKU_USER)

CKR = PyKCS11.CKR
CKM = PyKCS11.CKM
DAEMON, KEYTOOL, MODULE = sys.argv[1:4]
SOCK = os.path.join(os.getcwd(), "local.sock")
os.environ["KEYWARDEN_LOCAL_SOCKET"] = SOCK
os.environ.pop("KEYWARDEN_PKCS11_CONFIG", None)

checks = 0
daemon = None


def ok(what):
    global checks
    checks += 1
    print(f"ok {checks} - {what}", flush=True)


def fail(what):
    print(f"FAIL: {what}", file=sys.stderr, flush=True)
    if daemon is not None and daemon.poll() is None:
        daemon.kill()
    try:
        with open("daemon.log") as f:
            print("--- daemon log (last lines):\n" + "".join(f.readlines()[-20:]), file=sys.stderr)
    except OSError:
        pass
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)
    ok(what)


def ohandle(v):
    """An object handle PyKCS11's low-level calls accept."""
    h = LowLevel.CK_OBJECT_HANDLE()
    h.assign(v)
    return h


def sess(v):
    h = LowLevel.CK_SESSION_HANDLE()
    h.assign(v)
    return h


def hv(h):
    return h.value()


def name(rv):
    return CKR.get(rv, hex(rv))


def expect_rv(rv, want, what):
    if rv != want:
        fail(f"{what}: {name(rv)}, want {name(want)}")
    ok(f"{what} -> {name(want)}")


def expect_error(want, what, fn, *args):
    try:
        fn(*args)
    except PyKCS11.PyKCS11Error as e:
        if e.value != want:
            fail(f"{what}: {name(e.value)}, want {name(want)}")
        ok(f"{what} -> {name(want)}")
        return
    fail(f"{what}: succeeded, want {name(want)}")


def run(*cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True)
    return r.returncode, r.stdout, r.stderr


def keytool(*args):
    rc, out, err = run(KEYTOOL, *args)
    if rc != 0:
        fail(f"hsm-keytool {' '.join(args)}: exit {rc}: {err.decode()}")
    return out.decode()


def kid_of(key):
    import json
    return [v["kid"] for v in json.loads(keytool("show", key, "--json"))["versions"] if v["primary"]][0]


def start_daemon():
    global daemon
    if os.path.exists(SOCK):
        os.unlink(SOCK)
    log = open("daemon.log", "a")
    daemon = subprocess.Popen([DAEMON, "--listen", "", "--local-socket", SOCK], stdout=log, stderr=log)
    for _ in range(150):
        if os.path.exists(SOCK):
            return
        if daemon.poll() is not None:
            fail("keywardend exited during start-up")
        time.sleep(0.1)
    fail("keywardend did not create its socket")


def stop_daemon():
    global daemon
    daemon.send_signal(signal.SIGTERM)
    rc = daemon.wait(timeout=60)
    daemon = None
    if rc != 0:
        fail(f"keywardend exited {rc} on SIGTERM")


# --- signature checks with the openssl CLI -------------------------------------
def der_int(b):
    b = b.lstrip(b"\x00") or b"\x00"
    if b[0] & 0x80:
        b = b"\x00" + b
    return bytes([0x02, len(b)]) + b


def ecdsa_der(sig):
    half = len(sig) // 2
    body = der_int(sig[:half]) + der_int(sig[half:])
    return bytes([0x30, len(body)]) + body if len(body) < 0x80 else bytes([0x30, 0x81, len(body)]) + body


def openssl_verify(pem, data, sig, args):
    with open("v.data", "wb") as f:
        f.write(data)
    with open("v.sig", "wb") as f:
        f.write(sig)
    rc, _, err = run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pem, "-in", "v.data", "-sigfile", "v.sig", *args)
    return rc == 0


HASH = {256: hashlib.sha256, 384: hashlib.sha384, 512: hashlib.sha512}
DIGEST_INFO = {
    256: bytes.fromhex("3031300d060960864801650304020105000420"),
    384: bytes.fromhex("3041300d060960864801650304020205000430"),
    512: bytes.fromhex("3051300d060960864801650304020305000440"),
}


def pss(mech, h):
    hash_mech = {256: CKM["CKM_SHA256"], 384: CKM["CKM_SHA384"], 512: CKM["CKM_SHA512"]}[h]
    mgf = {256: PyKCS11.LowLevel.CKG_MGF1_SHA256, 384: PyKCS11.LowLevel.CKG_MGF1_SHA384,
           512: PyKCS11.LowLevel.CKG_MGF1_SHA512}[h]
    return PyKCS11.RSA_PSS_Mechanism(mech, hash_mech, mgf, h // 8)


MSG = b"keywarden signs this through PyKCS11\n"

# Every mechanism the module lists, with a key of its family, how the input is
# formed, and how openssl checks the result (None: HMAC, checked by C_Verify
# and against hsm-keytool).
CASES = []
for h in (256, 384, 512):
    CASES.append((f"CKM_SHA{h}_HMAC", "hm1", lambda h=h: PyKCS11.Mechanism(CKM[f"CKM_SHA{h}_HMAC"]), lambda m: m, None))
CASES.append(("CKM_ECDSA", "ec1", lambda: PyKCS11.Mechanism(CKM["CKM_ECDSA"]), lambda m: hashlib.sha256(m).digest(),
              lambda pem, m, s: openssl_verify(pem, hashlib.sha256(m).digest(), ecdsa_der(s), [])))
for h in (256, 384, 512):
    CASES.append((f"CKM_ECDSA_SHA{h}", "ec1", lambda h=h: PyKCS11.Mechanism(CKM[f"CKM_ECDSA_SHA{h}"]), lambda m: m,
                  lambda pem, m, s, h=h: openssl_verify(pem, HASH[h](m).digest(), ecdsa_der(s), [])))
CASES.append(("CKM_RSA_PKCS", "rsa1", lambda: PyKCS11.Mechanism(CKM["CKM_RSA_PKCS"]),
              lambda m: DIGEST_INFO[256] + hashlib.sha256(m).digest(),
              lambda pem, m, s: openssl_verify(pem, hashlib.sha256(m).digest(), s, ["-pkeyopt", "digest:sha256"])))
for h in (256, 384, 512):
    CASES.append((f"CKM_SHA{h}_RSA_PKCS", "rsa1", lambda h=h: PyKCS11.Mechanism(CKM[f"CKM_SHA{h}_RSA_PKCS"]), lambda m: m,
                  lambda pem, m, s, h=h: openssl_verify(pem, HASH[h](m).digest(), s, ["-pkeyopt", f"digest:sha{h}"])))
CASES.append(("CKM_RSA_PKCS_PSS", "rsa1", lambda: pss(CKM["CKM_RSA_PKCS_PSS"], 256), lambda m: hashlib.sha256(m).digest(),
              lambda pem, m, s: openssl_verify(pem, hashlib.sha256(m).digest(), s, [
                  "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_pss_saltlen:32"])))
for h in (256, 384, 512):
    CASES.append((f"CKM_SHA{h}_RSA_PKCS_PSS", "rsa1", lambda h=h: pss(CKM[f"CKM_SHA{h}_RSA_PKCS_PSS"], h), lambda m: m,
                  lambda pem, m, s, h=h: openssl_verify(pem, HASH[h](m).digest(), s, [
                      "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", f"digest:sha{h}", "-pkeyopt",
                      f"rsa_pss_saltlen:{h // 8}", "-pkeyopt", f"rsa_mgf1_md:sha{h}"])))


def ed_verify(pem, m, s):
    with open("v.data", "wb") as f:
        f.write(m)
    with open("v.sig", "wb") as f:
        f.write(s)
    return run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin", "-in", "v.data", "-sigfile", "v.sig")[0] == 0


CASES.append(("CKM_EDDSA", "ed1", lambda: PyKCS11.Mechanism(CKM["CKM_EDDSA"]), lambda m: m, ed_verify))


def main():
    start_daemon()
    ok("keywardend serves the local socket")
    pin = open("app.token").read().strip()

    p11 = PyKCS11.PyKCS11Lib()
    p11.load(MODULE)
    low = p11.lib
    ok("PyKCS11 loads and initialises the module")

    # --- initialisation -----------------------------------------------------
    expect_rv(low.C_Initialize(), CKR["CKR_CRYPTOKI_ALREADY_INITIALIZED"], "second C_Initialize")
    expect_rv(low.C_Finalize(), CKR["CKR_OK"], "C_Finalize")
    expect_rv(low.C_GetSlotList(0, LowLevel.ckintlist()), CKR["CKR_CRYPTOKI_NOT_INITIALIZED"], "C_GetSlotList after C_Finalize")
    expect_rv(low.C_GetInfo(LowLevel.CK_INFO()), CKR["CKR_CRYPTOKI_NOT_INITIALIZED"], "C_GetInfo after C_Finalize")
    expect_rv(low.C_Finalize(), CKR["CKR_CRYPTOKI_NOT_INITIALIZED"], "second C_Finalize")
    expect_rv(low.C_Initialize(), CKR["CKR_OK"], "C_Initialize again")
    info = p11.getInfo()
    check(info.cryptokiVersion == (2, 40), f"C_GetInfo: Cryptoki 2.40 ({info.cryptokiVersion})")
    check(info.manufacturerID.strip() == "keywarden", "C_GetInfo: manufacturer keywarden")

    # --- slot and token -----------------------------------------------------
    check(p11.getSlotList() == [1], "one slot, ID 1")
    check(p11.getSlotList(tokenPresent=True) == [1], "its token is present")
    check(p11.getSlotInfo(1).flags & CKF_TOKEN_PRESENT, "slot flags: CKF_TOKEN_PRESENT")
    check(p11.getTokenInfo(1).label.strip() == "keywarden", "token label keywarden")
    expect_error(CKR["CKR_SLOT_ID_INVALID"], "C_GetTokenInfo of slot 2", p11.getTokenInfo, 2)

    # --- mechanisms ------------------------------------------------------------
    listed = set(p11.getMechanismList(1))
    tested = {c[0] for c in CASES}
    check(listed == tested, f"C_GetMechanismList lists exactly the {len(tested)} mechanisms tested here")
    for m in sorted(listed):
        mi = p11.getMechanismInfo(1, m)
        if not (mi.flags & CKF_SIGN and mi.flags & CKF_VERIFY):
            fail(f"{m}: C_GetMechanismInfo lacks CKF_SIGN|CKF_VERIFY")
    ok("every listed mechanism claims CKF_SIGN and CKF_VERIFY")
    expect_rv(low.C_GetMechanismInfo(1, CKM["CKM_SHA_1"], LowLevel.CK_MECHANISM_INFO()), CKR["CKR_MECHANISM_INVALID"],
              "C_GetMechanismInfo of CKM_SHA_1")

    # --- sessions and login -----------------------------------------------------
    s = p11.openSession(1, CKF_SERIAL_SESSION)
    check(s.getSessionInfo().state == PyKCS11.LowLevel.CKS_RO_PUBLIC_SESSION, "new session: CKS_RO_PUBLIC_SESSION")
    check(s.findObjects() == [], "no object is visible before login")
    expect_rv(low.C_SignInit(s.session, PyKCS11.Mechanism(CKM["CKM_ECDSA"]).to_native(), ohandle(1)), CKR["CKR_USER_NOT_LOGGED_IN"],
              "C_SignInit before login")
    expect_error(CKR["CKR_PIN_INCORRECT"], "login with an unknown API token", s.login,
                 "kw_live_0000000000000000000000000000000000000000000")
    expect_error(CKR["CKR_PIN_INCORRECT"], "login with a mangled API token", s.login, pin[:-1] + ("A" if pin[-1] != "A" else "B"))
    expect_error(CKR["CKR_PIN_INCORRECT"], "login with a read_only API token (scope too small)", s.login,
                 open("ro.token").read().strip())
    expect_error(CKR["CKR_PIN_EXPIRED"], "login with an expired API token", s.login, open("short.token").read().strip())
    expect_error(CKR["CKR_USER_TYPE_INVALID"], "login as SO", s.login, pin, PyKCS11.LowLevel.CKU_SO)
    s.login(pin)
    ok("login with the pkcs11 API token")
    check(s.getSessionInfo().state == PyKCS11.LowLevel.CKS_RO_USER_FUNCTIONS, "logged in: CKS_RO_USER_FUNCTIONS")
    expect_error(CKR["CKR_USER_ALREADY_LOGGED_IN"], "second login", s.login, pin)

    def find1(cls, label, what):
        objs = s.findObjects([(CKA_CLASS, cls), (CKA_LABEL, label)])
        if len(objs) != 1:
            fail(f"{what}: {len(objs)} objects, want 1")
        return objs[0]

    keys = {}
    for label in ("ec1", "rsa1", "ed1"):
        keys[label] = find1(CKO_PRIVATE_KEY, label, f"private key {label}")
        keys[label + ".pub"] = find1(CKO_PUBLIC_KEY, label, f"public key {label}")
    keys["hm1"] = find1(CKO_SECRET_KEY, "hm1", "secret key hm1")
    ok("every key found by label: one private (or secret) and one public object each")
    for label in ("ec1", "rsa1", "ed1", "hm1"):
        kid = kid_of(label)
        got = bytes(s.getAttributeValue(keys[label], [CKA_ID], True)[0])
        if got != kid.encode():
            fail(f"{label}: CKA_ID {got!r}, want the kid {kid}")
    ok("CKA_ID of each key object is its signing kid")

    # --- sign every mechanism; C_Verify and openssl check ---------------------------
    hmac_len = s.getAttributeValue(keys["hm1"], [PyKCS11.LowLevel.CKA_VALUE_LEN])[0]
    check(hmac_len == 32, f"hm1: CKA_VALUE_LEN 32 ({hmac_len})")
    signed = set()
    for mech, key, make, prep, verify in CASES:
        data = prep(MSG)
        if mech.endswith("_HMAC") and p11.getMechanismInfo(1, mech).ulMinKeySize > hmac_len:
            # The mechanism info says the key is too short: C_SignInit agrees
            # (rather than the token failing at C_Sign).
            expect_rv(low.C_SignInit(s.session, make().to_native(), keys[key]), CKR["CKR_KEY_SIZE_RANGE"],
                      f"{mech} with a {hmac_len}-byte key (ulMinKeySize {p11.getMechanismInfo(1, mech).ulMinKeySize})")
            continue
        signed.add(mech)
        sig = bytes(s.sign(keys[key], data, make()))
        pub = keys.get(key + ".pub", keys[key])
        check(s.verify(pub, data, sig, make()), f"{mech}: C_Verify accepts the signature")
        bad = bytearray(sig)
        bad[len(bad) // 2] ^= 1
        check(not s.verify(pub, data, bytes(bad), make()), f"{mech}: C_Verify rejects a damaged signature")
        if verify is not None:
            check(verify(f"{key}.pem", MSG, sig), f"{mech}: openssl verifies the signature")
            check(not verify(f"{key}.pem", MSG + b"x", sig), f"{mech}: openssl rejects it for other data")
        elif mech == "CKM_SHA256_HMAC":
            rc, out, _ = run(KEYTOOL, "sign", "hm1", stdin=MSG)
            check(rc == 0 and out == sig, f"{mech}: equals hsm-keytool sign")
    check(signed == listed - {m for m in listed if "HMAC" in str(m) and p11.getMechanismInfo(1, m).ulMinKeySize > hmac_len},
          f"every listed mechanism signed with a key of its family ({len(signed)})")

    # Multi-part: C_SignUpdate x3 + C_SignFinal over the same message.
    for mech, key in (("CKM_ECDSA_SHA256", "ec1"), ("CKM_SHA256_RSA_PKCS", "rsa1"), ("CKM_SHA256_HMAC", "hm1")):
        m = PyKCS11.Mechanism(CKM[mech]).to_native()
        expect_rv(low.C_SignInit(s.session, m, keys[key]), CKR["CKR_OK"], f"{mech} multi-part: C_SignInit")
        for part in (MSG[:5], MSG[5:20], MSG[20:]):
            rv = low.C_SignUpdate(s.session, LowLevel.ckbytelist(part))
            if rv != CKR["CKR_OK"]:
                fail(f"{mech}: C_SignUpdate: {name(rv)}")
        sig = LowLevel.ckbytelist()
        expect_rv(low.C_SignFinal(s.session, sig), CKR["CKR_OK"], f"{mech} multi-part: C_SignFinal (length)")
        expect_rv(low.C_SignFinal(s.session, sig), CKR["CKR_OK"], f"{mech} multi-part: C_SignFinal")
        pub = keys.get(key + ".pub", keys[key])
        check(s.verify(pub, MSG, bytes(sig), PyKCS11.Mechanism(CKM[mech])), f"{mech} multi-part: C_Verify accepts it")

    # --- the two-call length convention -------------------------------------------
    for mech, key, size in (("CKM_ECDSA_SHA256", "ec1", 64), ("CKM_SHA256_RSA_PKCS", "rsa1", 256),
                            ("CKM_EDDSA", "ed1", 64), ("CKM_SHA256_HMAC", "hm1", 32)):
        m = PyKCS11.Mechanism(CKM[mech]).to_native()
        data = LowLevel.ckbytelist(MSG)
        expect_rv(low.C_SignInit(s.session, m, keys[key]), CKR["CKR_OK"], f"{mech}: C_SignInit")
        sig = LowLevel.ckbytelist()
        expect_rv(low.C_Sign(s.session, data, sig), CKR["CKR_OK"], f"{mech}: C_Sign with a NULL buffer")
        check(len(sig) == size, f"{mech}: ... reports {size} bytes ({len(sig)})")
        short = LowLevel.ckbytelist(size - 1)
        expect_rv(low.C_Sign(s.session, data, short), CKR["CKR_BUFFER_TOO_SMALL"], f"{mech}: C_Sign with {size - 1} bytes")
        right = LowLevel.ckbytelist(size)
        expect_rv(low.C_Sign(s.session, data, right), CKR["CKR_OK"], f"{mech}: the operation stayed active: C_Sign with {size}")
        pub = keys.get(key + ".pub", keys[key])
        check(s.verify(pub, MSG, bytes(right), PyKCS11.Mechanism(CKM[mech])), f"{mech}: ... and the signature verifies")
        expect_rv(low.C_Sign(s.session, data, LowLevel.ckbytelist(size)), CKR["CKR_OPERATION_NOT_INITIALIZED"],
                  f"{mech}: the operation ended with the signature")

    # --- state errors --------------------------------------------------------------
    ecm = PyKCS11.Mechanism(CKM["CKM_ECDSA_SHA256"]).to_native()
    expect_rv(low.C_SignInit(sess(987654), ecm, keys["ec1"]), CKR["CKR_SESSION_HANDLE_INVALID"], "C_SignInit on an unknown session")
    expect_rv(low.C_Sign(s.session, LowLevel.ckbytelist(MSG), LowLevel.ckbytelist(64)), CKR["CKR_OPERATION_NOT_INITIALIZED"],
              "C_Sign without C_SignInit")
    expect_rv(low.C_SignInit(s.session, ecm, keys["ec1"]), CKR["CKR_OK"], "C_SignInit")
    expect_rv(low.C_SignInit(s.session, ecm, keys["ec1"]), CKR["CKR_OPERATION_ACTIVE"], "C_SignInit twice")
    expect_rv(low.C_Sign(s.session, LowLevel.ckbytelist(MSG), LowLevel.ckbytelist(64)), CKR["CKR_OK"],
              "the first operation is still usable")
    expect_rv(low.C_SignInit(s.session, ecm, keys["ec1.pub"]), CKR["CKR_KEY_FUNCTION_NOT_PERMITTED"],
              "C_SignInit with a public key")
    expect_rv(low.C_SignInit(s.session, PyKCS11.Mechanism(CKM["CKM_EDDSA"]).to_native(), keys["ec1"]),
              CKR["CKR_KEY_TYPE_INCONSISTENT"], "C_SignInit: CKM_EDDSA with an EC key")
    expect_rv(low.C_SignInit(s.session, ecm, ohandle(99999)), CKR["CKR_KEY_HANDLE_INVALID"], "C_SignInit with an unknown key handle")
    expect_rv(low.C_SignInit(s.session, pss(CKM["CKM_SHA256_RSA_PKCS_PSS"], 384).to_native(), keys["rsa1"]),
              CKR["CKR_MECHANISM_PARAM_INVALID"], "CKM_SHA256_RSA_PKCS_PSS with SHA-384 parameters")

    # --- attributes --------------------------------------------------------------------
    for key in ("ec1", "rsa1", "ed1", "hm1"):
        t = LowLevel.ckattrlist(1)
        t[0].SetType(CKA_VALUE)
        expect_rv(low.C_GetAttributeValue(s.session, keys[key], t), CKR["CKR_ATTRIBUTE_SENSITIVE"], f"{key}: CKA_VALUE")
        sens, extr, sign = s.getAttributeValue(keys[key], [CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_SIGN])
        check(sens is True and extr is False and sign is True, f"{key}: CKA_SENSITIVE true, CKA_EXTRACTABLE false, CKA_SIGN true")
    t = LowLevel.ckattrlist(1)
    t[0].SetType(CKA_PRIVATE_EXPONENT)
    expect_rv(low.C_GetAttributeValue(s.session, keys["rsa1"], t), CKR["CKR_ATTRIBUTE_SENSITIVE"], "rsa1: CKA_PRIVATE_EXPONENT")
    expect_rv(low.C_GetAttributeValue(s.session, ohandle(99999), LowLevel.ckattrlist(0)), CKR["CKR_OBJECT_HANDLE_INVALID"],
              "C_GetAttributeValue of an unknown object")

    def der_of(pem):
        return run("openssl", "pkey", "-pubin", "-in", pem, "-outform", "DER")[1]

    rsa_text = run("openssl", "rsa", "-pubin", "-in", "rsa1.pem", "-noout", "-modulus")[1].decode()
    modulus = bytes.fromhex(rsa_text.strip().split("=", 1)[1])
    for obj in ("rsa1", "rsa1.pub"):
        n, e = s.getAttributeValue(keys[obj], [CKA_MODULUS, CKA_PUBLIC_EXPONENT], True)
        check(bytes(n) == modulus, f"{obj}: CKA_MODULUS equals the PEM's modulus")
        check(bytes(e) == b"\x01\x00\x01", f"{obj}: CKA_PUBLIC_EXPONENT is 65537")
    ec_der = der_of("ec1.pem")
    for obj in ("ec1", "ec1.pub"):
        params, point = s.getAttributeValue(keys[obj], [CKA_EC_PARAMS, CKA_EC_POINT], True)
        check(bytes(params) == bytes.fromhex("06082a8648ce3d030107"), f"{obj}: CKA_EC_PARAMS is prime256v1's OID")
        check(bytes(point) == b"\x04\x41" + ec_der[-65:], f"{obj}: CKA_EC_POINT is the PEM's point (DER OCTET STRING)")
    ed_der = der_of("ed1.pem")
    params, point = s.getAttributeValue(keys["ed1.pub"], [CKA_EC_PARAMS, CKA_EC_POINT], True)
    check(bytes(params) == bytes.fromhex("06032b6570"), "ed1.pub: CKA_EC_PARAMS is id-Ed25519")
    check(bytes(point) == b"\x04\x20" + ed_der[-32:], "ed1.pub: CKA_EC_POINT is the PEM's key")
    for obj in ("ec1.pub", "rsa1.pub", "ed1.pub"):
        spki = bytes(s.getAttributeValue(keys[obj], [CKA_PUBLIC_KEY_INFO], True)[0])
        check(spki == der_of(obj[:-4] + ".pem"), f"{obj}: CKA_PUBLIC_KEY_INFO equals hsm-keytool public-key")
    check(s.getAttributeValue(keys["ed1"], [CKA_KEY_TYPE])[0] == PyKCS11.LowLevel.CKK_EC_EDWARDS, "ed1: CKK_EC_EDWARDS")

    # --- rotation: the same handle signs with the new version -------------------------
    rot = find1(CKO_PRIVATE_KEY, "rot1", "private key rot1")
    mech = PyKCS11.Mechanism(CKM["CKM_ECDSA_SHA256"])
    old_kid = kid_of("rot1")
    sig_old = bytes(s.sign(rot, MSG, mech))
    keytool("rotate", "rot1", "--strategy", "IMMEDIATE")
    new_kid = kid_of("rot1")
    check(new_kid != old_kid, f"rotated rot1: {old_kid} -> {new_kid}")
    with open("rot1.new.pem", "w") as f:
        f.write(keytool("public-key", "rot1", "--kid", new_kid))
    check(hv(find1(CKO_PRIVATE_KEY, "rot1", "rot1 after rotation")) == hv(rot), "the private key keeps its handle across the rotation")
    check(bytes(s.getAttributeValue(rot, [CKA_ID], True)[0]) == new_kid.encode(), "its CKA_ID is now the new kid")
    sig_new = bytes(s.sign(rot, MSG, mech))
    check(openssl_verify("rot1.new.pem", hashlib.sha256(MSG).digest(), ecdsa_der(sig_new), []),
          "the new signature verifies with the new version's key (openssl)")
    check(not openssl_verify("rot1.pem", hashlib.sha256(MSG).digest(), ecdsa_der(sig_new), []),
          "... and not with the old version's key")
    check(openssl_verify("rot1.pem", hashlib.sha256(MSG).digest(), ecdsa_der(sig_old), []),
          "the old signature still verifies with the old version's key")
    pubs = {bytes(s.getAttributeValue(h, [CKA_ID], True)[0]).decode(): h
            for h in s.findObjects([(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_LABEL, "rot1")])}
    check(set(pubs) == {old_kid, new_kid}, "one public key object per version")
    check(s.verify(pubs[new_kid], MSG, sig_new, mech) and not s.verify(pubs[old_kid], MSG, sig_new, mech),
          "C_Verify: the new signature with the new version's object only")
    check(s.verify(pubs[old_kid], MSG, sig_old, mech), "C_Verify: the old signature with the old version's object")

    # --- 8 threads, one module ------------------------------------------------------------
    work = [("ec1", "CKM_ECDSA_SHA256"), ("rsa1", "CKM_SHA256_RSA_PKCS"), ("ed1", "CKM_EDDSA"), ("hm1", "CKM_SHA256_HMAC")]
    results, errors = [], []
    lock = threading.Lock()

    def worker(t):
        try:
            ts = p11.openSession(1, CKF_SERIAL_SESSION)
            for i in range(12):
                key, mech = work[(t + i) % len(work)]
                msg = f"thread {t} message {i}".encode()
                # keywardend rate-limits a credential (100 signs a second by
                # default): retry a CKR_FUNCTION_REJECTED after a pause.
                for _ in range(200):
                    try:
                        sig = bytes(ts.sign(keys[key], msg, PyKCS11.Mechanism(CKM[mech])))
                        break
                    except PyKCS11.PyKCS11Error as e:
                        if e.value != CKR["CKR_FUNCTION_REJECTED"]:
                            raise
                        time.sleep(0.05)
                with lock:
                    results.append((key, mech, msg, sig))
            ts.closeSession()
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(f"thread {t}: {e}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors and len(results) == 96, f"8 threads signed 96 times ({len(results)}; {errors[:2]})")
    bad = 0
    for key, mech, msg, sig in results:
        pub = keys.get(key + ".pub", keys[key])
        if not s.verify(pub, msg, sig, PyKCS11.Mechanism(CKM[mech])):
            bad += 1
        elif key == "ec1" and not openssl_verify("ec1.pem", hashlib.sha256(msg).digest(), ecdsa_der(sig), []):
            bad += 1
        elif key == "ed1" and not ed_verify("ed1.pem", msg, sig):
            bad += 1
    check(bad == 0, f"all 96 signatures verify ({bad} bad)")

    # --- a suspension lands while a thread signs in a loop --------------------------------
    # C_SignInit may skip its round trip when the daemon answered less than
    # 1 ms ago that no key changed (LocalClient::recently_checked), but the
    # daemon checks every C_Sign in full: no signature whose C_SignInit began
    # after `hsm-keytool suspend` returned may come out.
    events = []
    stop = threading.Event()

    def signer():
        ts = p11.openSession(1, CKF_SERIAL_SESSION)
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                ts.sign(keys["ec1"], b"race", PyKCS11.Mechanism(CKM["CKM_ECDSA_SHA256"]))
                events.append((t0, True, 0))
            except PyKCS11.PyKCS11Error as e:
                events.append((t0, False, e.value))
        ts.closeSession()

    th = threading.Thread(target=signer)
    th.start()
    time.sleep(0.3)
    keytool("suspend", "ec1", "--reason", "race test")
    acked = time.monotonic()
    time.sleep(0.3)
    stop.set()
    th.join()
    signed_before = sum(1 for t0, good, _ in events if good and t0 < acked)
    after = [(good, rv) for t0, good, rv in events if t0 > acked]
    check(signed_before > 0 and after and not any(good for good, _ in after),
          f"no signature after the suspension was acknowledged ({signed_before} before, "
          f"{len(after)} attempts after, {sum(1 for g, _ in after if g)} of them signed)")
    codes = {rv for good, rv in after if not good}
    check(codes <= {CKR["CKR_KEY_FUNCTION_NOT_PERMITTED"], CKR["CKR_FUNCTION_REJECTED"]},
          f"refused with CKR_KEY_FUNCTION_NOT_PERMITTED (or the rate limit's CKR_FUNCTION_REJECTED): {sorted(codes)}")
    keytool("resume", "ec1")
    s.sign(keys["ec1"], b"resumed", PyKCS11.Mechanism(CKM["CKM_ECDSA_SHA256"]))
    ok("resumed: the same handle signs again")

    # --- fork: the child initialises afresh and signs ------------------------------------
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 1
        try:
            rv = low.C_Initialize()
            if rv == CKR["CKR_OK"]:
                cs = p11.openSession(1, CKF_SERIAL_SESSION)
                cs.login(pin)
                k = cs.findObjects([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, "ec1")])[0]
                sig = bytes(cs.sign(k, b"from the child", PyKCS11.Mechanism(CKM["CKM_ECDSA_SHA256"])))
                os.write(w, sig)
                code = 0
            else:
                os.write(w, name(rv).encode())
        except Exception as e:  # noqa: BLE001 - the parent reports it
            os.write(w, str(e).encode())
        os._exit(code)
    os.close(w)
    child_out = b""
    while chunk := os.read(r, 4096):
        child_out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WEXITSTATUS(status) != 0:
        fail(f"forked child: {child_out[:200]!r}")
    ok("forked child: C_Initialize, login, sign")
    check(openssl_verify("ec1.pem", hashlib.sha256(b"from the child").digest(), ecdsa_der(child_out), []),
          "the child's signature verifies (openssl)")
    sig = bytes(s.sign(keys["ec1"], MSG, PyKCS11.Mechanism(CKM["CKM_ECDSA_SHA256"])))
    check(s.verify(keys["ec1.pub"], MSG, sig, PyKCS11.Mechanism(CKM["CKM_ECDSA_SHA256"])),
          "the parent still signs after the child exits")

    # --- daemon stopped, then restarted: the same process recovers -----------------------
    stop_daemon()
    ok("keywardend stopped")
    check(p11.getSlotList(tokenPresent=True) == [], "no slot with a token")
    check(p11.getSlotList() == [1], "the slot is still there")
    check(not p11.getSlotInfo(1).flags & CKF_TOKEN_PRESENT, "slot flags: no CKF_TOKEN_PRESENT")
    expect_error(CKR["CKR_TOKEN_NOT_PRESENT"], "C_GetTokenInfo", p11.getTokenInfo, 1)
    expect_rv(low.C_SignInit(s.session, ecm, keys["ec1"]), CKR["CKR_DEVICE_REMOVED"], "C_SignInit")
    expect_error(CKR["CKR_DEVICE_REMOVED"], "C_FindObjectsInit", s.findObjects, [(CKA_LABEL, "ec1")])
    start_daemon()
    ok("keywardend restarted")
    check(p11.getTokenInfo(1).label.strip() == "keywarden", "the token is back")
    sig = bytes(s.sign(keys["ec1"], MSG, PyKCS11.Mechanism(CKM["CKM_ECDSA_SHA256"])))
    check(openssl_verify("ec1.pem", hashlib.sha256(MSG).digest(), ecdsa_der(sig), []),
          "the same session signs again, without a new login (openssl verifies)")
    check([hv(h) for h in s.findObjects([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, "ec1")])] == [hv(keys["ec1"])],
          "objects are found again, with the same handle")

    # --- logout and close -------------------------------------------------------------
    s.logout()
    expect_rv(low.C_SignInit(s.session, ecm, keys["ec1"]), CKR["CKR_USER_NOT_LOGGED_IN"], "C_SignInit after logout")
    check(s.findObjects() == [], "no object is visible after logout")
    handle = s.session
    s.closeSession()
    expect_rv(low.C_SignInit(handle, ecm, keys["ec1"]), CKR["CKR_SESSION_HANDLE_INVALID"], "C_SignInit on a closed session")
    expect_rv(low.C_Finalize(), CKR["CKR_OK"], "C_Finalize")
    stop_daemon()
    print(f"pkcs11_pykcs11: all {checks} checks passed")


if __name__ == "__main__":
    try:
        main()
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
