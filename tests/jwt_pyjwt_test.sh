#!/usr/bin/env bash
# JWTs across a rotation, checked by an independent implementation: PyJWT
# (Debian python3-jwt, with python3-cryptography) under /usr/bin/python3.
# Runs under tests/with-token.sh:
#
#   jwt_pyjwt_test.sh HSM_KEYTOOL
#
# For ES256, RS256, PS256 and EdDSA jwt keys: sign a JWT, rotate the key
# (OVERLAPPING), sign another, export the JWKS, and let PyJWT verify both
# tokens using nothing but the JWKS (the JWK picked by the header's kid). The
# claims must come back as signed, and tampered tokens must be refused.
set -euo pipefail

K=${1:?usage: jwt_pyjwt_test.sh HSM_KEYTOOL}
: "${KW_TEST_DIR:?run under tests/with-token.sh}"
PY=/usr/bin/python3
work="$KW_TEST_DIR/pyjwt"
mkdir -p "$work"
cd "$work"

fail() {
  echo "jwt_pyjwt_test: FAIL: $*" >&2
  for f in out err; do
    if [ -s "$f" ]; then echo "--- $f:" >&2; head -c 4000 "$f" >&2; echo >&2; fi
  done
  exit 1
}

$PY -c 'import jwt, cryptography; print("PyJWT", jwt.__version__, "cryptography", cryptography.__version__)' \
  || fail "/usr/bin/python3 lacks PyJWT or cryptography (apt install python3-jwt python3-cryptography)"

"$K" init >out 2>err || fail "hsm-keytool init"
algs=(ES256 RS256 PS256 EdDSA)
for alg in "${algs[@]}"; do
  name="jwt-$(tr '[:upper:]' '[:lower:]' <<<"$alg")"
  "$K" generate --type jwt --alg "$alg" --name "$name" >out 2>err || fail "generate $name"
  printf '{"sub": "alice", "iss": "keywarden-test", "aud": "pyjwt", "alg_under_test": "%s", "when": "before"}' "$alg" >"claims-before-$alg.json"
  "$K" jwt sign "$name" --claims "claims-before-$alg.json" --ttl 10m >"$alg.before.jwt" 2>err || fail "jwt sign $name (before)"
  "$K" jwks >"jwks-before-$alg.json" 2>err || fail "jwks (before)"
  "$K" rotate "$name" --strategy OVERLAPPING --json >"rotate-$alg.json" 2>err || fail "rotate $name"
  printf '{"sub": "bob", "iss": "keywarden-test", "aud": "pyjwt", "alg_under_test": "%s", "when": "after"}' "$alg" >"claims-after-$alg.json"
  "$K" jwt sign "$name" --claims "claims-after-$alg.json" --ttl 10m >"$alg.after.jwt" 2>err || fail "jwt sign $name (after)"
  echo "signed $alg before and after rotating $name"
done
"$K" jwks >jwks.json 2>err || fail "jwks"

$PY - "${algs[@]}" <<'PY'
import base64, json, sys

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, RSAPSSAlgorithm

try:
    from jwt.algorithms import OKPAlgorithm
except ImportError:  # PyJWT without the cryptography-backed EdDSA support
    OKPAlgorithm = None

algs = sys.argv[1:]
jwks = json.load(open("jwks.json"))
checks = 0


def fail(msg):
    sys.exit("jwt_pyjwt_test: FAIL: " + msg)


def ok(msg):
    global checks
    checks += 1
    print("ok", checks, "-", msg)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


by_kid = {}
for k in jwks["keys"]:
    if k["kid"] in by_kid:
        fail("kid %s appears twice in the JWKS" % k["kid"])
    by_kid[k["kid"]] = k
    for private in ("d", "p", "q", "dp", "dq", "qi", "k"):
        if private in k:
            fail("JWK %s carries private member %r" % (k["kid"], private))
ok("JWKS: %d keys, unique kids, no private members" % len(by_kid))


def key_from_jwk(jwk_dict, alg):
    """The verification key, from the JWK alone: PyJWK first, else the
    algorithm class's from_jwk (OKPAlgorithm for EdDSA)."""
    try:
        return jwt.PyJWK(jwk_dict).key
    except Exception as e:  # PyJWT 2.6 knows OKP via PyJWK when cryptography is present
        if alg == "EdDSA" and OKPAlgorithm is not None:
            return OKPAlgorithm.from_jwk(json.dumps(jwk_dict))
        raise RuntimeError("PyJWK cannot load the %s JWK: %s" % (alg, e))


def decode(token, alg):
    header = jwt.get_unverified_header(token)
    if header.get("alg") != alg:
        fail("header alg %r, expected %r" % (header.get("alg"), alg))
    kid = header.get("kid")
    if kid not in by_kid:
        fail("token kid %r is not in the JWKS" % kid)
    jwk_dict = by_kid[kid]
    if jwk_dict.get("alg") != alg:
        fail("JWK %s says alg %r, expected %r" % (kid, jwk_dict.get("alg"), alg))
    key = key_from_jwk(jwk_dict, alg)
    claims = jwt.decode(token, key=key, algorithms=[alg], audience="pyjwt", issuer="keywarden-test",
                        options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    return kid, key, claims


def must_fail(token, alg, key, what):
    try:
        jwt.decode(token, key=key, algorithms=[alg], audience="pyjwt", issuer="keywarden-test")
    except jwt.InvalidSignatureError:
        ok("%s %s: refused (InvalidSignatureError)" % (alg, what))
        return
    except jwt.InvalidTokenError as e:
        ok("%s %s: refused (%s)" % (alg, what, type(e).__name__))
        return
    fail("%s %s: PyJWT accepted it" % (alg, what))


for alg in algs:
    before = open(alg + ".before.jwt").read().strip()
    after = open(alg + ".after.jwt").read().strip()
    rotation = json.load(open("rotate-%s.json" % alg))
    if rotation["state"] != "promoted" or rotation["strategy"] != "OVERLAPPING":
        fail("%s: rotation is %s/%s, expected OVERLAPPING/promoted" % (alg, rotation["strategy"], rotation["state"]))

    earlier = {k["kid"] for k in json.load(open("jwks-before-%s.json" % alg))["keys"]}
    if rotation["from_kid"] not in earlier or rotation["to_kid"] in earlier:
        fail("%s: the JWKS before the rotation should list only the old version" % alg)
    if rotation["from_kid"] not in by_kid or rotation["to_kid"] not in by_kid:
        fail("%s: during the overlap the JWKS must list both versions" % alg)
    ok("%s: JWKS lists only %s before the rotation, both versions during the overlap" % (alg, rotation["from_kid"]))

    kid_b, key_b, claims_b = decode(before, alg)
    kid_a, key_a, claims_a = decode(after, alg)
    if kid_b != rotation["from_kid"] or kid_a != rotation["to_kid"]:
        fail("%s: kids %s/%s, rotation says %s -> %s" % (alg, kid_b, kid_a, rotation["from_kid"], rotation["to_kid"]))
    if kid_b == kid_a:
        fail("%s: both tokens have kid %s" % (alg, kid_a))
    ok("%s: token from before the rotation verifies with JWK %s (old version)" % (alg, kid_b))
    ok("%s: token from after the rotation verifies with JWK %s (new version)" % (alg, kid_a))

    for claims, sub, when in ((claims_b, "alice", "before"), (claims_a, "bob", "after")):
        want = {"sub": sub, "iss": "keywarden-test", "aud": "pyjwt", "alg_under_test": alg, "when": when}
        for k, v in want.items():
            if claims.get(k) != v:
                fail("%s %s: claim %s = %r, expected %r" % (alg, when, k, claims.get(k), v))
        if claims["exp"] - claims["iat"] != 600:
            fail("%s %s: exp - iat = %d, expected 600 (--ttl 10m)" % (alg, when, claims["exp"] - claims["iat"]))
    ok("%s: claims as signed (sub, iss, aud, custom, exp = iat + 600)" % alg)

    # Tampering: changed claims, changed signature, a swapped kid, alg "none".
    h, p, s = before.split(".")
    forged_claims = dict(claims_b, sub="mallory")
    p_forged = b64url(json.dumps(forged_claims, separators=(",", ":")).encode())
    must_fail(h + "." + p_forged + "." + s, alg, key_b, "token with edited claims")
    sig = bytearray(unb64url(s))
    sig[len(sig) // 2] ^= 0x01
    must_fail(h + "." + p + "." + b64url(bytes(sig)), alg, key_b, "token with a flipped signature bit")
    must_fail(after, alg, key_b, "new token checked with the old version's JWK")
    must_fail(before, alg, key_a, "old token checked with the new version's JWK")
    header = json.loads(unb64url(h))
    header["kid"] = kid_a  # claim the other version: its key does not verify this signature
    h_swapped = b64url(json.dumps(header, separators=(",", ":")).encode())
    swapped = h_swapped + "." + p + "." + s
    must_fail(swapped, alg, key_from_jwk(by_kid[jwt.get_unverified_header(swapped)["kid"]], alg), "token with a swapped kid")
    none_token = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": kid_b}).encode()) + "." + p + "."
    must_fail(none_token, alg, key_b, "alg=none token")

print("PyJWT %s verified %d JWTs of %s across rotations from the JWKS alone; %d checks" %
      (jwt.__version__, 2 * len(algs), ", ".join(algs), checks))
PY
