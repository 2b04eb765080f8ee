#!/usr/bin/env bash
# End-to-end tests of keywardend (the HTTP daemon) against a private SoftHSM
# token, over TCP on 127.0.0.1 and over a unix socket.
#
#   tests/with-token.sh bash tests/server_test.sh /abs/keywardend /abs/hsm-keytool
#
# with-token.sh has exported the token, PIN and store settings and cd'd into
# the scratch directory $KW_TEST_DIR. Signatures are checked with the openssl
# CLI, JWTs with `hsm-keytool jwt verify`. Slowloris, concurrency, signals
# under load and raw truncated requests are driven by tests/server_client.py
# (standard library only, run with /usr/bin/python3). One line per check;
# stops at the first failure.
#
# SIGTERM under load: no answer cut off, and every answered request is in the
# audit log. kill -9 under load: a credit-limited token's use count is exact
# within the requests in flight; an unlimited token (counts may be flushed in
# batches) loses at most the last flush interval's uses.
#
# hsm-keytool and keywardend may share a store (the audit log chains onto the
# head read inside each write transaction). The auth matrix revokes a token
# with hsm-keytool while the daemon runs; the last section checks keytool
# reads and writes alongside a running daemon, and that nothing the daemon
# acknowledged afterwards is hidden or lost.
set -euo pipefail

D=${1:?usage: server_test.sh /path/to/keywardend /path/to/hsm-keytool}
K=${2:?usage: server_test.sh /path/to/keywardend /path/to/hsm-keytool}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=server_setup.sh
source "$here/server_setup.sh"
CLIENT=("$PY" "$here/server_client.py")

# svc_valid_events: VALID key_used events for the service token, read by
# hsm-keytool (with or without a daemon running).
svc_valid_events() {
  "$K" audit query --key svc --event key_used --limit 100000000 --json 2>err \
    | $PY -c 'import json, sys; print(sum(1 for l in sys.stdin if l.strip() and json.loads(l)["outcome"] == "VALID"))'
}

# audit_seqs QUERY: the seqs of the audit events the admin API returns for QUERY.
audit_seqs() {
  expect 200 "GET /v1/admin/audit?$1" GET "/v1/admin/audit?$1" "" "$ADMIN"
  jget '" ".join(str(e["seq"]) for e in j["events"])'
}

printf 'keywarden server test message\n' > msg
printf 'keywarden server test messagE\n' > msg.tampered
MSG_B64=$(base64 -w0 msg)
TAMPERED_B64=$(base64 -w0 msg.tampered)

# ==================================================================================
# Setup with hsm-keytool (no daemon running)
# ==================================================================================
must "init" "$K" init
must "issue the admin token" "$K" token issue --name admin --scope admin --out admin.tok
must "issue the service token" "$K" token issue --name svc --scope 'sign:pay-*' --scope 'verify:pay-*' --scope read_write --out svc.tok
must "issue a provisioning token" "$K" token issue --name prov --provisioning --scope enroll --out prov.tok
must "issue a sign-only token" "$K" token issue --name narrow --scope sign:pay-ecdsa --out narrow.tok
must "issue an admin token expiring in 2 s" "$K" token issue --name admin-exp --scope admin --expires-in 2s --out admin-exp.tok
t_exp_issued=$(date +%s)
must "issue an admin token to revoke later" "$K" token issue --name admin-rev --scope admin --out admin-rev.tok
must "issue a token and revoke it" "$K" token issue --name gone --scope read_only --out gone.tok
must "token revoke gone" "$K" token revoke gone
must "generate pay-ecdsa (ecdsa)" "$K" generate --type ecdsa --name pay-ecdsa
must "generate pay-hmac (hmac)" "$K" generate --type hmac --name pay-hmac
must "generate pay-jwt (jwt ES256)" "$K" generate --type jwt --alg ES256 --name pay-jwt
must "public-key pay-ecdsa" "$K" public-key pay-ecdsa --out pay-ecdsa.pem
grep -q -- "-----BEGIN PUBLIC KEY-----" pay-ecdsa.pem || fail "pay-ecdsa.pem is not a PEM public key"
must "show pay-jwt --json" "$K" show pay-jwt --json
JWT_KID=$(jget 'j["versions"][0]["kid"]')
[ -n "$JWT_KID" ] || fail "no kid for pay-jwt"
# A policy that matches none of our keys, with a short jwks_lead: the JWKS
# Cache-Control max-age is min(300, jwks_lead)/2 = 30.
cat > srv-policy.toml <<'EOF'
[[policy]]
name = "srv-test"
priority = 5
strategy = "OVERLAPPING"
cryptoperiod = "30d"
jwks_lead = "60s"
overlap = "1h"

[policy.match]
type = "jwt"
labels = { env = "nowhere" }
EOF
must "policy apply srv-policy.toml" "$K" policy apply srv-policy.toml
ADMIN=$(cat admin.tok)
SVC=$(cat svc.tok)
PROV=$(cat prov.tok)
ADMIN_EXP=$(cat admin-exp.tok)
ADMIN_REV=$(cat admin-rev.tok)
NARROW=$(cat narrow.tok)
GONE=$(cat gone.tok)
"${CLIENT[@]}" token-wellformed "$SVC" || fail "server_client.py computes token checksums differently from keywarden"
UNKNOWN=$("${CLIENT[@]}" token-unknown kw_live)
ok "server_client.py builds well-formed tokens (checksum matches an issued one)"

# ==================================================================================
# Daemon A
# ==================================================================================
start_daemon daemon-a.log
ok "keywardend answers /healthz on 127.0.0.1:$PORT (pid $dpid)"

# An idle daemon sleeps: its threads together wake a few dozen times a
# second (deadline sweep, WAL checkpointer, use-count flusher), not once
# per audit ingest interval (that alone was 500 a second) or spin.
wakeups() { cat /proc/"$dpid"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n}'; }
sleep 1
w0=$(wakeups); sleep 2; w1=$(wakeups)
idle_rate=$(( (w1 - w0) / 2 ))
[ "$idle_rate" -lt 150 ] || fail "idle keywardend woke $idle_rate times a second (want < 150)"
ok "an idle keywardend sleeps: $idle_rate wake-ups a second over 2 s"
# Threads carry names, so top -H, ps -L and perf tell them apart.
names=$(cat /proc/"$dpid"/task/*/comm | sort | uniq -c | awk '{printf "%s%sx%s", sep, $2, $1; sep=" "}')
for want in kw-http kw-audit-ingest kw-wal-ckpt kw-usage-flush kw-rotation; do
  grep -qx "$want" /proc/"$dpid"/task/*/comm || fail "no keywardend thread named $want (threads: $names)"
done
[ "$(grep -cx kw-http /proc/"$dpid"/task/*/comm | awk -F: '{n += $2} END {print n}')" -ge 2 ] ||
  fail "fewer than 2 kw-http workers (threads: $names)"
ok "keywardend's threads are named: $names"
[ -S "$SOCK" ] || fail "no unix socket at $SOCK"
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "unix socket mode is $(stat -c %a "$SOCK"), want 600"
ok "unix socket is mode 600"
grep -q "serving on tcp $HOST:$PORT and unix $SOCK" daemon-a.log || fail "start-up log line does not name both listeners"
ok "start-up log names both listeners"

# --- health, readiness, metrics, JWKS -------------------------------------------------
expect 200 "healthz" GET /healthz
jcheck "GET /healthz -> 200 ok" 'j == {"status": "ok"}'
expect 200 "readyz" GET /readyz
jcheck "GET /readyz -> 200 ready" 'j["ready"] is True and j["checks"]["token_logged_in"] is True and j["checks"]["store"] == "ok"'
# Readiness writes to the store: while another process holds its write lock
# for longer than busy_timeout_ms (2 s), the daemon is not ready.
rm -f locked.flag
"$PY" -c 'import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
time.sleep(6)
c.execute("ROLLBACK")' "${KEYWARDEN_STORE_URL#sqlite:}" locked.flag &
lpid=$!
for _ in $(seq 1 50); do [ -e locked.flag ] && break; sleep 0.1; done
[ -e locked.flag ] || fail "the lock holder did not start"
expect 503 "readyz while the store is locked" GET /readyz
jcheck "GET /readyz -> 503 while another process holds the store's write lock" 'j["ready"] is False and "lock" in j["checks"]["store"]'
expect_error 503 STORE_BUSY "creating a key while another process holds the store's write lock" \
  POST /v1/admin/keys '{"name": "locked-out", "type": "hmac"}' "$ADMIN"
wait "$lpid" || fail "the lock holder failed"
expect 200 "readyz after the lock" GET /readyz
jcheck "GET /readyz -> 200 again once the lock is released" 'j["ready"] is True and j["checks"]["store"] == "ok"'
expect_error 404 NOT_FOUND "POST /healthz (wrong method)" POST /healthz '{}'
expect 200 "jwks" GET /.well-known/jwks.json
jcheck "GET /.well-known/jwks.json lists pay-jwt's kid" "any(k.get('kid') == '$JWT_KID' and k.get('kty') == 'EC' for k in j['keys'])"
grep -qi '^cache-control: public, max-age=30' hdr || fail "JWKS Cache-Control is not 'public, max-age=30' (jwks_lead 60s)"
ok "JWKS Cache-Control: public, max-age=30 (half the shortest jwks_lead)"

# --- token verification ------------------------------------------------------------------
expect 200 "verify svc" POST /v1/tokens/verify "{\"token\": \"$SVC\"}"
jcheck "verify service token -> VALID with key info and ratelimit" \
  'j["code"] == "VALID" and j["valid"] is True and j["key"]["name"] == "svc" and sorted(j["key"]["scopes"]) == ["read_write", "sign:pay-*", "verify:pay-*"] and len(j["key"]["kid"]) > 0 and j["key"]["expires_at"] is None and j["credits"]["remaining"] is None and j["ratelimit"]["limit"] == 100 and j["ratelimit"]["remaining"] >= 0 and "retry_after_ms" not in j["ratelimit"]'
SVC_KID=$(jget 'j["key"]["kid"]')
grep -qi '^ratelimit-limit: 100' hdr || fail "no RateLimit-Limit header on a verify answer"
ok "verify answer carries RateLimit-* headers"
expect 200 "verify svc with scope" POST /v1/tokens/verify "{\"token\": \"$SVC\", \"scope\": \"sign:pay-ecdsa\"}"
jcheck "verify with a granted (glob) scope -> VALID" 'j["code"] == "VALID"'
expect 200 "verify read_only" POST /v1/tokens/verify "{\"token\": \"$SVC\", \"scope\": \"read_only\"}"
jcheck "read_write grants read_only -> VALID" 'j["code"] == "VALID"'
expect 200 "verify unknown" POST /v1/tokens/verify "{\"token\": \"$UNKNOWN\"}"
jcheck "verify a well-formed unknown token -> NOT_FOUND" 'j["code"] == "NOT_FOUND" and j["valid"] is False and "key" not in j'
expect 200 "verify garbage" POST /v1/tokens/verify '{"token": "kw_live_not-a-token"}'
jcheck "verify garbage -> MALFORMED" 'j["code"] == "MALFORMED" and j["valid"] is False'
expect 200 "verify one-char typo" POST /v1/tokens/verify "{\"token\": \"${SVC:0:12}$( [ "${SVC:12:1}" = A ] && echo B || echo A )${SVC:13}\"}"
jcheck "verify a token with a one-character typo -> MALFORMED (checksum)" 'j["code"] == "MALFORMED"'
expect 200 "verify scope" POST /v1/tokens/verify "{\"token\": \"$SVC\", \"scope\": \"admin\"}"
jcheck "verify with a scope not granted -> INSUFFICIENT_SCOPE" 'j["code"] == "INSUFFICIENT_SCOPE" and j["valid"] is False and j["key"]["name"] == "svc"'
expect 200 "verify scope 2" POST /v1/tokens/verify "{\"token\": \"$SVC\", \"scope\": \"sign:other-key\"}"
jcheck "glob sign:pay-* does not grant sign:other-key" 'j["code"] == "INSUFFICIENT_SCOPE"'
expect 200 "verify via header" POST /v1/tokens/verify '{}' "$SVC"
jcheck "token in Authorization: Bearer instead of the body -> VALID" 'j["code"] == "VALID" and j["key"]["name"] == "svc"'
expect 200 "verify via header, scope in body" POST /v1/tokens/verify '{"scope": "admin"}' "$SVC"
jcheck "header token with a body scope -> INSUFFICIENT_SCOPE" 'j["code"] == "INSUFFICIENT_SCOPE"'
expect_error 400 MISSING_FIELD "verify with no token at all" POST /v1/tokens/verify '{}'
expect_error 400 BAD_COST "verify with cost 0" POST /v1/tokens/verify "{\"token\": \"$SVC\", \"cost\": 0}"
expect_error 404 NOT_FOUND "GET /v1/tokens/verify (wrong method)" GET /v1/tokens/verify

expect 200 "batch" POST '/v1/tokens/verify:batch' "{\"tokens\": [{\"token\": \"$SVC\"}, {\"token\": \"$UNKNOWN\"}, {\"token\": \"garbage\"}, {\"token\": \"$SVC\", \"scope\": \"admin\"}, {\"token\": \"$GONE\"}, {\"token\": \"$ADMIN\", \"scope\": \"anything\"}]}"
jcheck "verify:batch answers per item, in order" \
  '[r["code"] for r in j["results"]] == ["VALID", "NOT_FOUND", "MALFORMED", "INSUFFICIENT_SCOPE", "REVOKED", "VALID"] and j["results"][0]["key"]["name"] == "svc" and j["results"][5]["key"]["name"] == "admin"'
expect 200 "empty batch" POST '/v1/tokens/verify:batch' '{"tokens": []}'
jcheck "verify:batch with no items -> empty results" 'j == {"results": []}'
expect_error 400 BAD_TYPE "verify:batch with tokens not an array" POST '/v1/tokens/verify:batch' '{"tokens": "x"}'
expect_error 400 UNKNOWN_FIELD "verify:batch item with an unknown field" POST '/v1/tokens/verify:batch' "{\"tokens\": [{\"token\": \"$SVC\", \"tokn\": 1}]}"
big_batch=$($PY -c 'import json; print(json.dumps({"tokens": [{"token": "x"}] * 101}))')
expect_error 413 BATCH_TOO_LARGE "verify:batch with 101 items" POST '/v1/tokens/verify:batch' "$big_batch"

# --- sign / verify / hmac / jwt ------------------------------------------------------------
expect 200 "sign pay-ecdsa" POST /v1/keys/pay-ecdsa/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
jcheck "POST /v1/keys/pay-ecdsa/sign -> signature, kid, version" 'len(j["signature"]) > 0 and j["version"] == 1 and len(j["kid"]) > 0'
SIG_B64=$(jget 'j["signature"]')
ECDSA_KID=$(jget 'j["kid"]')
printf '%s' "$SIG_B64" | base64 -d > ecdsa.sig
openssl dgst -sha256 -verify pay-ecdsa.pem -signature ecdsa.sig msg >out 2>err || fail "openssl rejects the HTTP pay-ecdsa signature"
ok "openssl dgst -sha256 -verify accepts the signature (public key from hsm-keytool public-key)"
if openssl dgst -sha256 -verify pay-ecdsa.pem -signature ecdsa.sig msg.tampered >out 2>err; then fail "openssl accepted the signature over tampered data"; fi
ok "openssl rejects the signature over tampered data"
expect 200 "sign utf8" POST /v1/keys/pay-ecdsa/sign '{"data": "keywarden server test message\n", "encoding": "utf8", "format": "raw"}' "$SVC"
jcheck "sign with encoding utf8, format raw -> 64-byte P-256 signature" 'len(__import__("base64").b64decode(j["signature"])) == 64'
expect 200 "verify pay-ecdsa" POST /v1/keys/pay-ecdsa/verify "{\"data\": \"$MSG_B64\", \"signature\": \"$SIG_B64\"}" "$SVC"
jcheck "POST /v1/keys/pay-ecdsa/verify -> valid true with the kid" "j == {'valid': True, 'kid': '$ECDSA_KID'}"
expect 200 "verify tampered" POST /v1/keys/pay-ecdsa/verify "{\"data\": \"$TAMPERED_B64\", \"signature\": \"$SIG_B64\"}" "$SVC"
jcheck "verify over tampered data -> valid false" 'j["valid"] is False and j["kid"] is None'
expect_error 400 BAD_BASE64 "sign with data not base64" POST /v1/keys/pay-ecdsa/sign '{"data": "***"}' "$SVC"
expect_error 400 BAD_ENCODING "sign with an unknown encoding" POST /v1/keys/pay-ecdsa/sign '{"data": "x", "encoding": "hex"}' "$SVC"
expect_error 400 MISSING_FIELD "sign without data" POST /v1/keys/pay-ecdsa/sign '{}' "$SVC"
expect_error 401 AUTH_MISSING "sign without a token" POST /v1/keys/pay-ecdsa/sign "{\"data\": \"$MSG_B64\"}"
expect_error 403 AUTH_SCOPE "sign a key outside the token's scopes" POST /v1/keys/other/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
expect_error 404 KEY_NOT_FOUND "sign an unknown key inside the scopes" POST /v1/keys/pay-nothing/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
expect_error 403 AUTH_SCOPE "verify with a token lacking verify:<key>" POST /v1/keys/pay-ecdsa/verify "{\"data\": \"$MSG_B64\", \"signature\": \"$SIG_B64\"}" "$NARROW"

expect 200 "hmac" POST /v1/keys/pay-hmac/hmac "{\"data\": \"$MSG_B64\"}" "$SVC"
jcheck "POST /v1/keys/pay-hmac/hmac -> 32-byte HMAC-SHA256" 'len(__import__("base64").b64decode(j["mac"])) == 32 and j["version"] == 1'
MAC_B64=$(jget 'j["mac"]')
expect 200 "hmac again" POST /v1/keys/pay-hmac/hmac "{\"data\": \"$MSG_B64\"}" "$SVC"
jcheck "HMAC is deterministic" "j['mac'] == '$MAC_B64'"
expect 200 "hmac tampered" POST /v1/keys/pay-hmac/hmac "{\"data\": \"$TAMPERED_B64\"}" "$SVC"
jcheck "HMAC of different data differs" "j['mac'] != '$MAC_B64'"
expect 200 "verify hmac" POST /v1/keys/pay-hmac/verify "{\"data\": \"$MSG_B64\", \"signature\": \"$MAC_B64\"}" "$SVC"
jcheck "POST /v1/keys/pay-hmac/verify accepts the MAC" 'j["valid"] is True'
expect 200 "verify hmac tampered" POST /v1/keys/pay-hmac/verify "{\"data\": \"$TAMPERED_B64\", \"signature\": \"$MAC_B64\"}" "$SVC"
jcheck "the MAC does not verify over tampered data" 'j["valid"] is False'
expect_error 400 NOT_HMAC "hmac with an ECDSA key" POST /v1/keys/pay-ecdsa/hmac "{\"data\": \"$MSG_B64\"}" "$SVC"
expect_error 401 AUTH_MISSING "hmac without a token" POST /v1/keys/pay-hmac/hmac "{\"data\": \"$MSG_B64\"}"

expect 200 "jwt sign" POST /v1/jwt/pay-jwt/sign '{"claims": {"sub": "server-test", "aud": "payments"}, "ttl": 600}' "$SVC"
jcheck "POST /v1/jwt/pay-jwt/sign -> a JWT" 'j["jwt"].count(".") == 2'
jget 'j["jwt"]' > jwt.txt
$PY - "$JWT_KID" <<'EOF' || fail "JWT header/claims are wrong: $(cat jwt.txt)"
import base64, json, sys
h, c, s = open("jwt.txt").read().strip().split(".")
dec = lambda p: json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
h, c = dec(h), dec(c)
assert h["alg"] == "ES256" and h["kid"] == sys.argv[1], h
assert c["sub"] == "server-test" and c["aud"] == "payments" and c["exp"] - c["iat"] == 600, c
assert len(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))) == 64
EOF
ok "JWT header names ES256 and pay-jwt's kid; exp = iat + ttl"
expect_error 400 BAD_TYPE "jwt sign with claims not an object" POST /v1/jwt/pay-jwt/sign '{"claims": [1]}' "$SVC"
expect_error 400 BAD_TTL "jwt sign with ttl 0" POST /v1/jwt/pay-jwt/sign '{"claims": {}, "ttl": 0}' "$SVC"
expect_error 403 AUTH_SCOPE "jwt sign without sign:<key>" POST /v1/jwt/pay-jwt/sign '{"claims": {}}' "$NARROW"

# --- the same over the unix socket ------------------------------------------------------
VIA=unix
expect 200 "unix healthz" GET /healthz
jcheck "unix socket: GET /healthz -> ok" 'j["status"] == "ok"'
expect 200 "unix verify" POST /v1/tokens/verify "{\"token\": \"$SVC\"}"
jcheck "unix socket: verify -> VALID" 'j["code"] == "VALID" and j["key"]["name"] == "svc"'
expect 200 "unix sign" POST /v1/keys/pay-ecdsa/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
jget 'j["signature"]' | base64 -d > ecdsa-unix.sig
openssl dgst -sha256 -verify pay-ecdsa.pem -signature ecdsa-unix.sig msg >out 2>err || fail "openssl rejects the signature made over the unix socket"
ok "unix socket: sign -> openssl verifies"
expect 200 "unix hmac" POST /v1/keys/pay-hmac/hmac "{\"data\": \"$MSG_B64\"}" "$SVC"
jcheck "unix socket: hmac -> the same MAC as over TCP" "j['mac'] == '$MAC_B64'"
expect 200 "unix jwt" POST /v1/jwt/pay-jwt/sign '{"claims": {"sub": "unix"}}' "$SVC"
jcheck "unix socket: jwt sign -> a JWT" 'j["jwt"].count(".") == 2'
expect_error 401 AUTH_MISSING "unix socket: admin without a token" GET /v1/admin/keys
expect 200 "unix admin" GET /v1/admin/keys "" "$ADMIN"
jcheck "unix socket: GET /v1/admin/keys with the admin token" 'any(k["name"] == "pay-ecdsa" for k in j["keys"])'
VIA=tcp

# ==================================================================================
# Admin authentication matrix (GET /v1/admin/keys)
# ==================================================================================
vf_before=$(audit_seqs "event=verify_failed&limit=10000" | awk '{print $NF}')
vf_before=${vf_before:-0}
expect_error 401 AUTH_MISSING "admin: no Authorization header" GET /v1/admin/keys
expect_error 401 AUTH_MALFORMED "admin: Authorization: Basic x" GET /v1/admin/keys "" "RAW:Basic x"
expect_error 401 AUTH_MALFORMED "admin: garbage bearer" GET /v1/admin/keys "" "garbage-token"
expect_error 401 AUTH_INVALID "admin: well-formed unknown token" GET /v1/admin/keys "" "$UNKNOWN"
expect_error 403 AUTH_SCOPE "admin: service token" GET /v1/admin/keys "" "$SVC"
wait_s=$((t_exp_issued + 3 - $(date +%s)))
[ "$wait_s" -gt 0 ] && sleep "$wait_s"
expect_error 401 AUTH_EXPIRED "admin: expired admin token" GET /v1/admin/keys "" "$ADMIN_EXP"
expect 200 "admin: admin-rev before the revocation" GET /v1/admin/keys "" "$ADMIN_REV"
ok "admin: admin-rev works before it is revoked"
must "hsm-keytool token revoke admin-rev while keywardend runs" "$K" token revoke admin-rev
expect_error 401 AUTH_REVOKED "admin: revoked admin token" GET /v1/admin/keys "" "$ADMIN_REV"
expect 200 "admin: valid admin token" GET /v1/admin/keys "" "$ADMIN"
jcheck "admin: valid admin token -> 200 with every key" \
  'set(k["name"] for k in j["keys"]) >= {"admin", "svc", "prov", "narrow", "pay-ecdsa", "pay-hmac", "pay-jwt"}'
expect 200 "audit verify_failed" GET "/v1/admin/audit?event=verify_failed&after=$vf_before" "" "$ADMIN"
cp out matrix-refusals.json
# Every refusal is audited: a missing header, another scheme and a string
# that is not a token by the credential check (op "authorize", naming the
# caller's address, sampled per caller), the rest by the token service.
$PY - "$ADMIN" "$SVC" "$ADMIN_EXP" "$ADMIN_REV" "$UNKNOWN" <<'EOF' || fail "the auth refusals are not in the audit log as expected"
import json, sys
ev = json.load(open("out"))["events"]
got = [(e["type"], e["key"], e["op"], e["outcome"]) for e in ev]
want = [("verify_failed", "", "authorize", "AUTH_MISSING"), ("verify_failed", "", "authorize", "AUTH_MALFORMED"),
        ("verify_failed", "", "authorize", "AUTH_MALFORMED"),
        ("verify_failed", "", "verify_token", "NOT_FOUND"), ("verify_failed", "svc", "verify_token", "INSUFFICIENT_SCOPE"),
        ("verify_failed", "admin-exp", "verify_token", "EXPIRED"), ("verify_failed", "admin-rev", "verify_token", "REVOKED")]
if got != want:
    sys.exit("verify_failed events during the matrix: %s, want %s" % (got, want))
# The unknown token is named by a pseudonym, the others by their kid.
if len(ev[3]["details"].get("token", "")) < 16 or not all(e["kid"] for e in ev[4:]):
    sys.exit("refusals should name the unknown token by a pseudonym, the others by their kid: %s" % ev)
if any(e["details"].get("caller") != "tcp:127.0.0.1" or e["details"].get("path") != "/v1/admin/keys" for e in ev[:3]):
    sys.exit("header-level refusals should name the caller and the path: %s" % ev[:3])
text = open("out").read()
if any(t in text for t in sys.argv[1:]):
    sys.exit("a raw token appears in the audit log")
EOF
ok "audit (admin API): AUTH_MISSING/MALFORMED/INVALID/SCOPE/EXPIRED/REVOKED each recorded once as verify_failed"

# Suspended and exhausted admin tokens (issued and suspended through the API).
expect 201 "issue admin-sus" POST /v1/admin/tokens '{"name": "admin-sus", "scopes": ["admin"]}' "$ADMIN"
ADMIN_SUS=$(jget 'j["token"]')
expect 200 "suspend admin-sus" POST /v1/admin/keys/admin-sus/suspend '{"reason": "server test"}' "$ADMIN"
expect_error 401 AUTH_DISABLED "admin: suspended admin token" GET /v1/admin/keys "" "$ADMIN_SUS"
expect 200 "resume admin-sus" POST /v1/admin/keys/admin-sus/resume '{}' "$ADMIN"
expect 200 "admin: resumed admin token" GET /v1/admin/keys "" "$ADMIN_SUS"
ok "admin: a resumed admin token works again"
expect 200 "revoke admin-sus via API" POST /v1/admin/keys/admin-sus/revoke '{"reason": "done"}' "$ADMIN"
expect_error 401 AUTH_REVOKED "admin: token revoked through the API" GET /v1/admin/keys "" "$ADMIN_SUS"
expect 201 "issue admin-once" POST /v1/admin/tokens '{"name": "admin-once", "scopes": ["admin"], "max_uses": 1}' "$ADMIN"
ADMIN_ONCE=$(jget 'j["token"]')
expect 200 "admin: single-use admin token, first use" GET /v1/admin/keys "" "$ADMIN_ONCE"
expect_error 401 AUTH_EXHAUSTED "admin: single-use admin token, second use" GET /v1/admin/keys "" "$ADMIN_ONCE"

# ==================================================================================
# Admin endpoints
# ==================================================================================
expect 201 "create pay-new" POST /v1/admin/keys '{"name": "pay-new", "type": "ecdsa", "curve": "P-256", "owner": "team-pay", "labels": {"env": "test"}, "scopes": ["x"]}' "$ADMIN"
jcheck "POST /v1/admin/keys -> 201 with the new key" \
  'j["name"] == "pay-new" and j["type"] == "ecdsa" and j["owner"] == "team-pay" and j["labels"] == {"env": "test"} and len(j["versions"]) == 1 and j["versions"][0]["primary"] is True and j["versions"][0]["state"] == "active"'
NEW_ID=$(jget 'j["id"]')
NEW_KID1=$(jget 'j["versions"][0]["kid"]')
expect_error 409 ALREADY_EXISTS "create a duplicate key" POST /v1/admin/keys '{"name": "pay-new", "type": "ecdsa"}' "$ADMIN"
expect_error 400 BAD_TYPE "create a key of an unknown type" POST /v1/admin/keys '{"name": "k2", "type": "rot13"}' "$ADMIN"
expect_error 400 BAD_CURVE "create a key on an unknown curve" POST /v1/admin/keys '{"name": "k2", "type": "ecdsa", "curve": "P-192"}' "$ADMIN"
expect_error 400 UNKNOWN_FIELD "create a key with an unknown field" POST /v1/admin/keys '{"name": "k2", "type": "ecdsa", "colour": "red"}' "$ADMIN"
expect_error 400 MISSING_FIELD "create a key without a name" POST /v1/admin/keys '{"type": "ecdsa"}' "$ADMIN"
expect 200 "get pay-new" GET /v1/admin/keys/pay-new "" "$ADMIN"
jcheck "GET /v1/admin/keys/pay-new -> the same key" "j['id'] == '$NEW_ID' and j['versions'][0]['kid'] == '$NEW_KID1'"
expect_error 404 KEY_NOT_FOUND "GET an unknown key" GET /v1/admin/keys/no-such-key "" "$ADMIN"
expect 200 "sign pay-new v1" POST /v1/keys/pay-new/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
jcheck "the new key signs (version 1)" "j['kid'] == '$NEW_KID1' and j['version'] == 1"

expect 200 "rotate pay-new" POST /v1/admin/keys/pay-new/rotate '{"strategy": "IMMEDIATE"}' "$ADMIN"
jcheck "POST .../rotate IMMEDIATE -> a rotation record" \
  "j['key'] == 'pay-new' and j['strategy'] == 'IMMEDIATE' and j['from_kid'] == '$NEW_KID1' and j['to_kid'] not in ('', '$NEW_KID1')"
NEW_KID2=$(jget 'j["to_kid"]')
expect 200 "rotation status" GET /v1/admin/keys/pay-new/rotation "" "$ADMIN"
jcheck "GET .../rotation -> the rotation" "j['rotation']['key'] == 'pay-new' and j['rotation']['to_kid'] == '$NEW_KID2' and j['rotation']['strategy'] == 'IMMEDIATE'"
expect 200 "rotation status, never rotated" GET /v1/admin/keys/pay-ecdsa/rotation "" "$ADMIN"
jcheck "GET .../rotation of a never-rotated key -> null" 'j["rotation"] is None'
expect 200 "sign pay-new v2" POST /v1/keys/pay-new/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
jcheck "after the rotation the key signs with the new version" "j['kid'] == '$NEW_KID2' and j['version'] == 2"
expect_error 400 BAD_STRATEGY "rotate with an unknown strategy" POST /v1/admin/keys/pay-new/rotate '{"strategy": "SIDEWAYS"}' "$ADMIN"
expect_error 404 KEY_NOT_FOUND "rotate an unknown key" POST /v1/admin/keys/no-such-key/rotate '{"strategy": "IMMEDIATE"}' "$ADMIN"

expect 200 "suspend pay-new" POST /v1/admin/keys/pay-new/suspend '{"reason": "server test"}' "$ADMIN"
jcheck "POST .../suspend -> the primary version is suspended" 'any(v["primary"] and v["state"] == "suspended" for v in j["versions"])'
expect_error 409 NOT_PERMITTED "sign with a suspended key" POST /v1/keys/pay-new/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
expect 200 "resume pay-new" POST /v1/admin/keys/pay-new/resume '{}' "$ADMIN"
jcheck "POST .../resume -> active again" 'any(v["primary"] and v["state"] == "active" for v in j["versions"])'
expect 200 "sign after resume" POST /v1/keys/pay-new/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
ok "a resumed key signs again"
expect_error 404 NOT_FOUND "unknown key action" POST /v1/admin/keys/pay-new/frobnicate '{}' "$ADMIN"
expect 200 "revoke pay-new" POST /v1/admin/keys/pay-new/revoke '{"reason": "server test"}' "$ADMIN"
jcheck "POST .../revoke -> revoked_at set" 'j["revoked_at"] is not None'
expect_error 409 NOT_PERMITTED "sign with a revoked key" POST /v1/keys/pay-new/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
expect_error 409 NOT_PERMITTED "resume a revoked key" POST /v1/admin/keys/pay-new/resume '{}' "$ADMIN"

# deactivate, destroy (refused while active unless forced), compromise.
expect 201 "create life-a" POST /v1/admin/keys '{"name": "life-a", "type": "hmac"}' "$ADMIN"
expect 201 "create life-b" POST /v1/admin/keys '{"name": "life-b", "type": "ecdsa"}' "$ADMIN"
expect 201 "create life-c" POST /v1/admin/keys '{"name": "life-c", "type": "hmac"}' "$ADMIN"
expect_error 409 NOT_PERMITTED "destroy an active key without force" POST /v1/admin/keys/life-a/destroy '{}' "$ADMIN"
expect 200 "life-a unchanged" GET /v1/admin/keys/life-a "" "$ADMIN"
jcheck "a refused destroy changes nothing" 'j["versions"][0]["state"] == "active"'
expect_error 400 BAD_TYPE "destroy with force not a boolean" POST /v1/admin/keys/life-a/destroy '{"force": "yes"}' "$ADMIN"
expect 200 "deactivate life-a" POST /v1/admin/keys/life-a/deactivate '{"reason": "server test"}' "$ADMIN"
jcheck "POST .../deactivate -> deactivated" 'j["versions"][0]["state"] == "deactivated"'
expect_error 409 NOT_PERMITTED "sign with a deactivated key" POST /v1/keys/life-a/sign "{\"data\": \"$MSG_B64\"}" "$ADMIN"
expect_error 409 NOT_PERMITTED "deactivate it again" POST /v1/admin/keys/life-a/deactivate '{}' "$ADMIN"
expect 200 "destroy life-a (deactivated: no force needed)" POST /v1/admin/keys/life-a/destroy '{}' "$ADMIN"
jcheck "POST .../destroy -> destroyed" 'j["versions"][0]["state"] == "destroyed"'
expect 200 "destroy life-b with force (active)" POST /v1/admin/keys/life-b/destroy '{"force": true, "reason": "decommissioned"}' "$ADMIN"
jcheck "a forced destroy goes through deactivated to destroyed" 'j["versions"][0]["state"] == "destroyed"'
expect_error 409 NOT_PERMITTED "sign with a destroyed key" POST /v1/keys/life-b/sign "{\"data\": \"$MSG_B64\"}" "$ADMIN"
expect 200 "compromise life-c" POST /v1/admin/keys/life-c/compromise '{"reason": "leaked in a log"}' "$ADMIN"
jcheck "POST .../compromise -> compromised" 'j["versions"][0]["state"] == "compromised"'
expect_error 409 NOT_PERMITTED "resume a compromised key" POST /v1/admin/keys/life-c/resume '{}' "$ADMIN"
expect_error 404 KEY_NOT_FOUND "deactivate an unknown key" POST /v1/admin/keys/no-such-key/deactivate '{}' "$ADMIN"
expect_error 400 UNKNOWN_FIELD "compromise with an unknown field" POST /v1/admin/keys/life-c/compromise '{"why": "x"}' "$ADMIN"
"$K" audit query --key life-b --event state_changed --json >out 2>err || fail "audit query life-b"
grep -q '"to":"deactivated"' out && grep -q '"to":"destroyed"' out ||
  fail "the forced destroy of life-b is not audited as two state changes: $(cat out)"
ok "the forced destroy is audited as active -> deactivated -> destroyed"
expect_error 405 METHOD_NOT_ALLOWED "POST /v1/admin/limits" POST /v1/admin/limits '{}' "$ADMIN"

expect 201 "issue a token through the API" POST /v1/admin/tokens '{"name": "api-issued", "scopes": ["verify:pay-*"], "max_uses": 3, "owner": "team-pay"}' "$ADMIN"
jcheck "POST /v1/admin/tokens -> 201 with the token shown once" 'j["name"] == "api-issued" and j["type"] == "api_token" and j["token"].startswith("kw_live_") and j["display"].endswith("...")'
API_TOK=$(jget 'j["token"]')
expect 200 "verify api-issued" POST /v1/tokens/verify "{\"token\": \"$API_TOK\", \"scope\": \"verify:pay-hmac\"}"
jcheck "the API-issued token verifies, 2 uses left" 'j["code"] == "VALID" and j["credits"]["remaining"] == 2'
expect_error 409 ALREADY_EXISTS "issue a token with a taken name" POST /v1/admin/tokens '{"name": "api-issued"}' "$ADMIN"
expect_error 400 BAD_TYPE "issue a token with scopes not an array" POST /v1/admin/tokens '{"name": "t9", "scopes": "admin"}' "$ADMIN"
expect_error 400 INVALID_ARGUMENT "issue a token with max_uses 0" POST /v1/admin/tokens '{"name": "t9", "max_uses": 0}' "$ADMIN"

expect 200 "rotations" GET /v1/admin/rotations "" "$ADMIN"
jcheck "GET /v1/admin/rotations lists the pay-new rotation" "any(r['key'] == 'pay-new' and r['to_kid'] == '$NEW_KID2' for r in j['rotations'])"
expect 200 "rotations?key" "GET" "/v1/admin/rotations?key=pay-ecdsa" "" "$ADMIN"
jcheck "GET /v1/admin/rotations?key=pay-ecdsa -> none" 'j["rotations"] == []'
expect 200 "rotation stats" GET /v1/admin/rotations/stats "" "$ADMIN"
jcheck "GET /v1/admin/rotations/stats counts the IMMEDIATE rotation" 'any(s["strategy"] == "IMMEDIATE" and s["total"] >= 1 for s in j["stats"])'
expect 200 "audit ?key" GET "/v1/admin/audit?key=pay-new" "" "$ADMIN"
jcheck "GET /v1/admin/audit?key=pay-new -> only pay-new events, creation to revocation" \
  'len(j["events"]) >= 6 and all(e["key"] == "pay-new" for e in j["events"]) and [e["seq"] for e in j["events"]] == sorted(e["seq"] for e in j["events"]) and {"key_used", "state_changed"} <= {e["type"] for e in j["events"]}'
expect 200 "audit ?event" GET "/v1/admin/audit?event=verify_failed&limit=2" "" "$ADMIN"
jcheck "GET /v1/admin/audit?event=verify_failed&limit=2" 'len(j["events"]) == 2 and all(e["type"] == "verify_failed" for e in j["events"])'
expect_error 400 BAD_EVENT "audit with an unknown event type" GET "/v1/admin/audit?event=nonsense" "" "$ADMIN"
expect_error 400 BAD_SINCE "audit with a bad since" GET "/v1/admin/audit?since=yesterday" "" "$ADMIN"
expect 200 "usage svc" GET /v1/admin/keys/svc/usage "" "$ADMIN"
jcheck "GET /v1/admin/keys/svc/usage -> uses counted, last_used_at set" \
  "j['key'] == 'svc' and j['versions'][0]['kid'] == '$SVC_KID' and j['versions'][0]['uses'] >= 10 and j['versions'][0]['max_uses'] is None and j['versions'][0]['last_used_at'] is not None"
expect 200 "usage api-issued" GET /v1/admin/keys/api-issued/usage "" "$ADMIN"
jcheck "GET .../usage of a max_uses token -> uses 1 of 3" 'j["versions"][0]["uses"] == 1 and j["versions"][0]["max_uses"] == 3'
expect 200 "usage pay-ecdsa" GET /v1/admin/keys/pay-ecdsa/usage "" "$ADMIN"
jcheck "GET .../usage of a signing key -> last_used_at" 'j["versions"][0]["last_used_at"] is not None'
expect_error 400 BAD_LIMIT "PUT /v1/admin/limits with limit 0" PUT /v1/admin/limits '{"limit": 0}' "$ADMIN"
expect_error 400 BAD_TYPE "PUT /v1/admin/limits with limit a string" PUT /v1/admin/limits '{"limit": "5"}' "$ADMIN"
expect 200 "policies reload" POST /v1/admin/policies/reload '{}' "$ADMIN"
jcheck "POST /v1/admin/policies/reload -> 1 policy" 'j == {"policies": 1}'
expect_error 404 NOT_FOUND "unknown admin endpoint" GET /v1/admin/frobnicate "" "$ADMIN"
expect_error 401 AUTH_MISSING "unknown admin endpoint without a token (auth first)" GET /v1/admin/frobnicate

# ==================================================================================
# Rate limits
# ==================================================================================
expect 200 "token limit" PUT /v1/admin/limits "{\"token_kid\": \"$SVC_KID\", \"limit\": 5, \"period_ms\": 2000, \"burst\": 5}" "$ADMIN"
jcheck "PUT /v1/admin/limits for the service token's kid" 'j == {"limit": 5, "period_ms": 2000, "burst": 5}'
"${CLIENT[@]}" burst "$HOST" "$PORT" POST /v1/tokens/verify "" "{\"token\": \"$SVC\"}" 6 >out 2>err || fail "burst of 6 verifications"
$PY <<'EOF' || fail "token rate limit is not exact"
import json, sys
r = [json.loads(l) for l in open("out") if l.strip()]
codes = [(x["status"], x["body"]["code"]) for x in r]
if r[-1]["ms"] >= 400:
    sys.exit("6 verifications took %s ms: too slow to test a 400 ms emission interval" % r[-1]["ms"])
if codes != [(200, "VALID")] * 5 + [(429, "RATE_LIMITED")]:
    sys.exit("codes %s, want 5 x VALID then 429 RATE_LIMITED" % codes)
if [x["body"]["ratelimit"]["remaining"] for x in r[:5]] != [4, 3, 2, 1, 0]:
    sys.exit("remaining counts %s, want 4 3 2 1 0" % [x["body"]["ratelimit"]["remaining"] for x in r[:5]])
rl = r[5]["body"]["ratelimit"]
if not (0 < rl["retry_after_ms"] <= 400 and rl["limit"] == 5 and rl["remaining"] == 0):
    sys.exit("bad ratelimit object on the 429: %s" % rl)
if r[5]["body"]["valid"] is not False or r[5]["body"]["key"]["name"] != "svc":
    sys.exit("429 body: %s" % r[5]["body"])
EOF
ok "token limit 5/2s: exactly 5 VALID, the 6th 429 RATE_LIMITED with retry_after_ms in (0, 400]"
expect 200 "usage svc after limit" GET /v1/admin/keys/svc/usage "" "$ADMIN"
uses_limited=$(jget 'j["versions"][0]["uses"]')
sleep 2.1
expect 200 "verify after the period" POST /v1/tokens/verify "{\"token\": \"$SVC\"}"
jcheck "after sleeping the period the token is VALID again" 'j["code"] == "VALID" and j["ratelimit"]["limit"] == 5'
expect 200 "usage svc after refill" GET /v1/admin/keys/svc/usage "" "$ADMIN"
jcheck "a rate-limited verification spends no use" "j['versions'][0]['uses'] == $uses_limited + 1"
expect 200 "token limit back" PUT /v1/admin/limits "{\"token_kid\": \"$SVC_KID\", \"limit\": 100000, \"period_ms\": 1000, \"burst\": 100000}" "$ADMIN"

expect 200 "key limit" PUT /v1/admin/limits '{"key": "pay-hmac", "limit": 3, "period_ms": 2000, "burst": 3}' "$ADMIN"
"${CLIENT[@]}" burst "$HOST" "$PORT" POST /v1/keys/pay-hmac/hmac "$SVC" "{\"data\": \"$MSG_B64\"}" 4 >out 2>err || fail "burst of 4 hmac calls"
$PY <<'EOF' || fail "key rate limit is not exact"
import json, sys
r = [json.loads(l) for l in open("out") if l.strip()]
if r[-1]["ms"] >= 666:
    sys.exit("4 HMACs took %s ms: too slow to test a 666 ms emission interval" % r[-1]["ms"])
st = [x["status"] for x in r]
if st != [200, 200, 200, 429] or r[3]["body"]["error"]["code"] != "RATE_LIMITED" or "mac" not in r[2]["body"]:
    sys.exit("statuses %s, want 200 200 200 429 RATE_LIMITED; last body %s" % (st, r[3]["body"]))
EOF
ok "key limit 3/2s on pay-hmac: 3 HMACs OK, the 4th 429 RATE_LIMITED"
expect 200 "sign other key" POST /v1/keys/pay-ecdsa/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
ok "the pay-hmac limit does not touch pay-ecdsa"
expect 200 "audit rate_limited" GET "/v1/admin/audit?event=rate_limited" "" "$ADMIN"
jcheck "rate-limit refusals audited" '{(e["key"], e["op"]) for e in j["events"]} == {("svc", "verify_token"), ("pay-hmac", "sign")}'
ok "both rate-limit refusals are audited (rate_limited events for svc and pay-hmac)"
expect 200 "key limit back" PUT /v1/admin/limits '{"key": "pay-hmac", "limit": 1000, "period_ms": 1000, "burst": 1000}' "$ADMIN"

# Limits set here are listed, removable, audited, and refused for a subject
# that does not exist (the restart below checks that they are kept).
expect 200 "list limits" GET /v1/admin/limits "" "$ADMIN"
jcheck "GET /v1/admin/limits lists the key and token limits set above, the defaults from the config" \
  "[(k['key'], k['limit'], k['updated_by'] != '') for k in j['keys']] == [('pay-hmac', 1000, True)]
   and [(t['token_kid'], t['limit']) for t in j['tokens']] == [('$SVC_KID', 100000)]
   and j['token_default']['source'] == 'config' and j['key_default']['source'] == 'config'"
expect_error 404 KEY_NOT_FOUND "PUT a limit for a key that does not exist" PUT /v1/admin/limits '{"key": "no-such-key", "limit": 5}' "$ADMIN"
expect_error 404 TOKEN_NOT_FOUND "PUT a limit for a token kid that does not exist" PUT /v1/admin/limits '{"token_kid": "nokid", "limit": 5}' "$ADMIN"
expect_error 400 BAD_REQUEST "PUT naming both a key and a token" PUT /v1/admin/limits "{\"key\": \"pay-hmac\", \"token_kid\": \"$SVC_KID\", \"limit\": 5}" "$ADMIN"
expect_error 400 MISSING_FIELD "PUT a limit without 'limit'" PUT /v1/admin/limits '{"key": "pay-hmac", "period_ms": 1000}' "$ADMIN"
expect_error 400 UNKNOWN_FIELD "DELETE with a limit in the body" DELETE /v1/admin/limits '{"key": "pay-hmac", "limit": 5}' "$ADMIN"
expect_error 403 AUTH_SCOPE "GET /v1/admin/limits with a read_write token" GET /v1/admin/limits "" "$SVC"
expect 200 "remove key limit" DELETE /v1/admin/limits '{"key": "pay-hmac"}' "$ADMIN"
jcheck "DELETE a key limit -> the key default from the config applies again" 'j == {"limit": 1000, "period_ms": 1000, "burst": 1000}'
expect_error 404 LIMIT_NOT_FOUND "DELETE a key limit twice" DELETE /v1/admin/limits '{"key": "pay-hmac"}' "$ADMIN"
expect 200 "list limits after delete" GET /v1/admin/limits "" "$ADMIN"
jcheck "the removed key limit is gone from the list" 'j["keys"] == []'
expect 200 "audit policy_changed" GET "/v1/admin/audit?event=policy_changed" "" "$ADMIN"
jcheck "limit changes are audited as policy_changed (set_limit, remove_limit)" \
  '{(e["op"], e["key"]) for e in j["events"]} >= {("set_limit", "pay-hmac"), ("remove_limit", "pay-hmac"), ("set_limit", "")}'
jcheck "a refused change is not audited as one (one remove_limit for two DELETEs, no set_limit for unknown subjects)" \
  '[e["key"] for e in j["events"] if e["op"] == "remove_limit"] == ["pay-hmac"]
   and not any(e["key"] == "no-such-key" or e["kid"] == "nokid" for e in j["events"])'
# The default for keys is set at run time the same way, and removed back to
# the configuration's.
expect 200 "key default" PUT /v1/admin/limits '{"default": "key", "limit": 2, "period_ms": 60000, "burst": 2}' "$ADMIN"
expect 200 "list with a key default" GET /v1/admin/limits "" "$ADMIN"
jcheck "GET /v1/admin/limits shows the key default set through the API" \
  "j['key_default']['limit'] == 2 and j['key_default']['source'] == 'admin' and j['token_default']['source'] == 'config'"
for i in 1 2; do expect 200 "hmac $i under the key default" POST /v1/keys/pay-hmac/hmac "{\"data\": \"$MSG_B64\"}" "$SVC"; done
expect_error 429 RATE_LIMITED "the 3rd HMAC under a key default of 2 a minute" POST /v1/keys/pay-hmac/hmac "{\"data\": \"$MSG_B64\"}" "$SVC"
expect_error 400 BAD_REQUEST "PUT default 'both'" PUT /v1/admin/limits '{"default": "both", "limit": 5}' "$ADMIN"
expect_error 400 BAD_REQUEST "PUT naming a key and a default" PUT /v1/admin/limits '{"default": "key", "key": "pay-hmac", "limit": 5}' "$ADMIN"
expect 200 "remove key default" DELETE /v1/admin/limits '{"default": "key"}' "$ADMIN"
jcheck "DELETE the key default -> the configuration's (1000 a second) again" 'j == {"limit": 1000, "period_ms": 1000, "burst": 1000}'
expect 200 "hmac after the key default is removed" POST /v1/keys/pay-hmac/hmac "{\"data\": \"$MSG_B64\"}" "$SVC"

# Denials are audited sampled (first 10 per key per minute, then 1 in 100),
# each audited one carrying how many it suppressed; metrics count them all.
expect 201 "issue flood" POST /v1/admin/tokens '{"name": "flood", "scopes": ["read_only"]}' "$ADMIN"
FLOOD=$(jget 'j["token"]')
FLOOD_KID=$(jget 'j["versions"][0]["kid"]')
expect 200 "flood limit" PUT /v1/admin/limits "{\"token_kid\": \"$FLOOD_KID\", \"limit\": 1, \"period_ms\": 3600000, \"burst\": 1}" "$ADMIN"
call GET /metrics
denials_before=$($PY -c "import re; print(sum(float(m) for m in re.findall(r'^keywarden_rate_limit_denials_total\{[^}]*scope=\"token\"[^}]*\} (\S+)$', open('out').read(), re.M)))")
"${CLIENT[@]}" burst "$HOST" "$PORT" POST /v1/tokens/verify "" "{\"token\": \"$FLOOD\"}" 251 >out 2>err || fail "burst of 251 verifications"
$PY <<'EOF2' || fail "flood burst"
import json, sys
codes = [json.loads(l)["body"]["code"] for l in open("out") if l.strip()]
if codes != ["VALID"] + ["RATE_LIMITED"] * 250:
    sys.exit("codes: %s" % codes[:5])
EOF2
ok "flood: 1 VALID, then 250 RATE_LIMITED"
expect 200 "audit flood" GET "/v1/admin/audit?key=flood&event=rate_limited" "" "$ADMIN"
$PY <<'EOF2' || fail "rate-limit denials are not sampled as documented"
import json, sys
ev = json.load(open("out"))["events"]
n = len(ev)
sup = [json.loads(e["details"])["suppressed"] if isinstance(e["details"], str) else e["details"]["suppressed"] for e in ev]
# denials 1-10 audited, then the 110th and the 210th: 12 events for 250 denials
if n != 12:
    sys.exit("%d rate_limited events for 250 denials, want 12" % n)
if sup != [0] * 10 + [99, 99]:
    sys.exit("suppressed counts %s, want ten 0 then 99 99" % sup)
if any(e["op"] != "verify_token" or e["outcome"] != "RATE_LIMITED" for e in ev):
    sys.exit("bad events: %s" % ev[:2])
EOF2
ok "250 denials -> 12 rate_limited audit events (10, then 1 in 100) carrying 0 x 10, 99, 99 suppressed"
expect 200 "usage flood" GET /v1/admin/keys/flood/usage "" "$ADMIN"
jcheck "usage by outcome counts every denial: 12 audited + 198 carried + 40 pending = 250" \
  'j["by_outcome"].get("RATE_LIMITED") == 250 and j["by_outcome"].get("VALID") == 1'
expect 200 "audit verify_failed flood" GET "/v1/admin/audit?key=flood&event=verify_failed" "" "$ADMIN"
jcheck "a denial is not audited twice (no verify_failed RATE_LIMITED events)" 'j["events"] == []'
call GET /metrics
$PY - "$denials_before" <<'EOF2' || fail "metrics do not count every denial"
import re, sys
after = sum(float(m) for m in re.findall(r'^keywarden_rate_limit_denials_total\{[^}]*scope="token"[^}]*\} (\S+)$', open("out").read(), re.M))
if after - float(sys.argv[1]) != 250:
    sys.exit("token denials went from %s to %s, want +250" % (sys.argv[1], after))
EOF2
ok "metrics count all 250 denials"

# ==================================================================================
# Provisioning and max_uses tokens
# ==================================================================================
expect 200 "prov 1" POST /v1/tokens/verify "{\"token\": \"$PROV\", \"scope\": \"enroll\"}"
jcheck "provisioning token, first use -> VALID, 0 uses left, expires in 1 h" \
  'j["code"] == "VALID" and j["credits"]["remaining"] == 0 and j["key"]["expires_at"] is not None'
expect 200 "prov 2" POST /v1/tokens/verify "{\"token\": \"$PROV\", \"scope\": \"enroll\"}"
jcheck "provisioning token, second use -> USAGE_EXCEEDED" 'j["code"] == "USAGE_EXCEEDED" and j["valid"] is False and j["credits"]["remaining"] == 0'
expect 201 "issue race" POST /v1/admin/tokens '{"name": "race", "max_uses": 25}' "$ADMIN"
RACE=$(jget 'j["token"]')
"${CLIENT[@]}" race "$HOST" "$PORT" "$RACE" 10 5 >out 2>err || fail "race client"
jcheck "max_uses 25 under 10 concurrent clients (50 tries) -> exactly 25 VALID" 'j == {"VALID": 25, "USAGE_EXCEEDED": 25}'
expect 200 "usage race" GET /v1/admin/keys/race/usage "" "$ADMIN"
jcheck "usage of the raced token is 25; by_outcome counts 25 VALID, 25 USAGE_EXCEEDED" \
  'j["versions"][0]["uses"] == 25 and j["by_outcome"].get("VALID") == 25 and j["by_outcome"].get("USAGE_EXCEEDED") == 25'
expect 201 "issue counted" POST /v1/admin/tokens '{"name": "counted", "max_uses": 1000000}' "$ADMIN"
jget 'j["token"]' > counted.tok
COUNTED_TOK=$(cat counted.tok)
COUNTED_KID=$(jget 'j["versions"][0]["kid"]')

# ==================================================================================
# Malformed and hostile requests
# ==================================================================================
expect_error 400 BAD_JSON "garbage body" POST /v1/tokens/verify 'this is not json'
expect_error 400 BAD_TYPE "JSON array body" POST /v1/tokens/verify '["token"]'
expect_error 400 UNKNOWN_FIELD "unknown field" POST /v1/tokens/verify "{\"token\": \"$SVC\", \"tokne\": 1}"
expect_error 400 BAD_TYPE "token: 5" POST /v1/tokens/verify '{"token": 5}'
expect_error 400 BAD_TYPE "scope: [] " POST /v1/tokens/verify "{\"token\": \"$SVC\", \"scope\": []}"
expect_error 400 EMPTY_BODY "no body" POST /v1/tokens/verify
expect_error 400 BAD_JSON "truncated JSON" POST /v1/tokens/verify '{"token": "abc'
# Body limit 1 MiB: exactly 1 MiB is read (and refused as JSON); one byte more is 413.
head -c 1048576 /dev/zero | tr '\0' 'a' > body-1m
head -c 1048577 /dev/zero | tr '\0' 'a' > body-1m1
head -c 2097152 /dev/zero | tr '\0' 'a' > body-2m
expect_error 400 BAD_JSON "a 1 MiB body (at the limit)" POST /v1/tokens/verify @body-1m
expect_error 413 BODY_TOO_LARGE "a 1 MiB + 1 byte body" POST /v1/tokens/verify @body-1m1
expect_error 413 BODY_TOO_LARGE "a 2 MiB body" POST /v1/tokens/verify @body-2m
big_header=$(head -c 32768 /dev/zero | tr '\0' 'h')
ok_header=$(head -c 15000 /dev/zero | tr '\0' 'h')
code=$(curl -sS -o out -w '%{http_code}' -H "X-Big: $ok_header" "http://$HOST:$PORT/healthz" 2>err) || fail "curl with a 15 KB header: $(cat err)"
[ "$code" = 200 ] || fail "a 15 KB header: HTTP $code, want 200"
ok "a 15 KB header is accepted"
code=$(curl -sS -o out -w '%{http_code}' -H "X-Big: $big_header" "http://$HOST:$PORT/healthz" 2>err) || fail "curl with a 32 KiB header: $(cat err)"
[ "$code" = 431 ] || fail "a 32 KiB header: HTTP $code, want 431"
jcheck "a 32 KiB header -> 431 HEADERS_TOO_LARGE" 'j["error"]["code"] == "HEADERS_TOO_LARGE"'
"${CLIENT[@]}" truncated "$HOST" "$PORT" >out 2>err || fail "truncated-request client"
kill -0 "$dpid" 2>/dev/null || fail "keywardend died after truncated requests"
jcheck "truncated body (Content-Length 100, 10 bytes, then EOF) -> 400, daemon alive" 'j["half_close_answer"].startswith("HTTP/1.1 400") and "BAD_REQUEST" in j["half_close_answer"]'
expect_error 404 NOT_FOUND "unknown path" GET /v1/nothing-here
expect_error 404 NOT_FOUND "unknown key operation" POST /v1/keys/pay-ecdsa/frobnicate '{}' "$SVC"
expect_error 404 NOT_FOUND "unknown method on a key route" DELETE /v1/keys/pay-ecdsa/sign
expect_error 404 NOT_FOUND "an unknown HTTP method" BREW /healthz

# Brute-force guard: 30 NOT_FOUND answers a minute per caller address, then
# 429 SLOW_DOWN for every verify from that address. Run over the unix socket
# (address "unix") so the TCP clients of the rest of the test are not slowed.
VIA=unix
unknown29=$("${CLIENT[@]}" token-unknown kw_live 29 | $PY -c 'import json, sys; print(json.dumps({"tokens": [{"token": t} for t in sys.stdin.read().split()]}))')
expect 200 "batch of 29 unknown" POST '/v1/tokens/verify:batch' "$unknown29"
jcheck "brute-force guard: 29 unknown tokens in a batch -> 29 NOT_FOUND" '[r["code"] for r in j["results"]] == ["NOT_FOUND"] * 29'
expect 200 "verify svc after 29" POST /v1/tokens/verify "{\"token\": \"$SVC\"}"
jcheck "brute-force guard: after 29 NOT_FOUND the caller still verifies" 'j["code"] == "VALID"'
expect 200 "30th unknown" POST /v1/tokens/verify "{\"token\": \"$("${CLIENT[@]}" token-unknown kw_live)\"}"
jcheck "brute-force guard: the 30th unknown token -> NOT_FOUND" 'j["code"] == "NOT_FOUND"'
expect_error 429 SLOW_DOWN "brute-force guard: the next verify from the same address, even of a valid token" POST /v1/tokens/verify "{\"token\": \"$SVC\"}"
expect_error 429 SLOW_DOWN "brute-force guard: verify:batch from the same address" POST '/v1/tokens/verify:batch' "{\"tokens\": [{\"token\": \"$SVC\"}]}"
expect_error 429 SLOW_DOWN "brute-force guard: the admin API from the same address, even with the admin token" GET /v1/admin/keys "" "$ADMIN"
retry_after=$(tr -d '\r' <hdr | awk -F': ' 'tolower($1) == "retry-after" {print $2}')
[ "${retry_after:-0}" -ge 1 ] && [ "$retry_after" -le 60 ] || fail "SLOW_DOWN: Retry-After is '$retry_after', want 1..60 s"
ok "brute-force guard: SLOW_DOWN says when to come back (Retry-After: $retry_after)"
VIA=tcp
expect 200 "tcp verify during unix slow-down" POST /v1/tokens/verify "{\"token\": \"$SVC\"}"
jcheck "brute-force guard: another address (TCP) is not slowed down" 'j["code"] == "VALID"'

# Slowloris: 8 connections (twice the worker threads) send header bytes one per
# second; the 10 s request deadline must cut each of them, while /healthz,
# probed every 250 ms on fresh connections, keeps answering fast.
"${CLIENT[@]}" slowloris "$HOST" "$PORT" 8 16 >out 2>err || fail "slowloris client"
echo "# slowloris: $(cat out)"
jcheck "slowloris: all 8 slow connections closed by the server 9-12.5 s in" \
  'j["closed"] == 8 and 9 <= j["closed_after_min"] and j["closed_after_max"] <= 12.5'
jcheck "slowloris: meanwhile /healthz answered every probe in < 1 s" \
  'j["probes"] >= 20 and j["probe_failures"] == 0 and j["probe_max_ms"] < 1000'

kill -0 "$dpid" 2>/dev/null || fail "keywardend died during the hostile requests"
expect 200 "healthz after abuse" GET /healthz
jcheck "after all this, /healthz is still 200 ok" 'j["status"] == "ok"'

# --- metrics (after traffic of every kind) -------------------------------------------------
expect 200 "metrics" GET /metrics
grep -qi '^content-type: text/plain; version=0.0.4' hdr || fail "/metrics Content-Type is not Prometheus text"
$PY <<'EOF' || fail "/metrics content is wrong"
import re, sys
text = open("out").read()
series = {}
for line in text.splitlines():
    if line.startswith("#") or not line.strip():
        continue
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$', line)
    if not m:
        sys.exit("not Prometheus text: %r" % line)
    series[m.group(1) + (m.group(2) or "")] = float(m.group(3))
def val(name, **labels):
    total = 0
    for k, v in series.items():
        if k.split("{")[0] == name and all('%s="%s"' % kv in k for kv in labels.items()):
            total += v
    return total
for n in ["keywarden_http_requests_total", "keywarden_token_verifications_total", "keywarden_rate_limit_denials_total"]:
    if "# TYPE %s counter" % n not in text:
        sys.exit("no TYPE line for " + n)
checks = {
    "verify 200s": val("keywarden_http_requests_total", route="/v1/tokens/verify", status="200") >= 20,
    "verify 429s": val("keywarden_http_requests_total", route="/v1/tokens/verify", status="429") >= 1,
    "VALID": val("keywarden_token_verifications_total", code="VALID") >= 20,
    "MALFORMED": val("keywarden_token_verifications_total", code="MALFORMED") >= 2,
    "NOT_FOUND": val("keywarden_token_verifications_total", code="NOT_FOUND") >= 2,
    "RATE_LIMITED": val("keywarden_token_verifications_total", code="RATE_LIMITED") >= 1,
    "token denials": val("keywarden_rate_limit_denials_total", scope="token") >= 1,
    "key denials": val("keywarden_rate_limit_denials_total", scope="key") >= 1,
    "brute-force denials": val("keywarden_rate_limit_denials_total", scope="brute_force") >= 2,
    "sign route": val("keywarden_http_requests_total", route="/v1/keys/{name}/sign", status="200") >= 3,
    "WAL checkpoint counters": 'keywarden_store_wal_checkpoints_total{outcome="restarted"}' in series
                               and 'keywarden_store_wal_checkpoints_total{outcome="restart_deferred"}' in series
                               and series.get('keywarden_store_wal_checkpoints_total{outcome="failed"}') == 0,
    "latency histogram": "keywarden_http_request_seconds_bucket" in text or "keywarden_http_request_seconds_count" in text,
    # HSM operation latency, per operation, counted once per call.
    "HSM sign latency": val("keywarden_hsm_operation_seconds_count", op="sign") >= 3,
    "HSM hmac latency": val("keywarden_hsm_operation_seconds_count", op="hmac") >= 1,
    "HSM jwt latency": val("keywarden_hsm_operation_seconds_count", op="jwt_sign") >= 1,
    "keys by state": val("keywarden_key_versions", state="active") >= 5,
    "audit queue depth": "keywarden_audit_queue_depth" in series and series["keywarden_audit_queue_depth"] >= 0,
    # Route labels are a fixed set: key names and unknown paths (404s) must not
    # create series, or any client could grow /metrics without bound.
    "bounded route labels": not [k for k in series if k.startswith("keywarden_http_request")
                                 and any(w in k for w in ("pay-ecdsa", "nothing-here", "frobnicate"))],
}
bad = [k for k, ok in checks.items() if not ok]
if bad:
    sys.exit("metric checks failed: %s" % bad)
EOF
ok "GET /metrics: Prometheus text with http_requests_total, token_verifications_total, denials; routes without key names"

# --- SIGHUP reloads policies ----------------------------------------------------------------
# A changed set applied with hsm-keytool while the daemon runs takes effect on
# SIGHUP, not before: the JWKS Cache-Control follows the shorter jwks_lead.
jwks_max_age() {  # jwks_max_age WANT DESCRIPTION
  expect 200 "jwks" GET /.well-known/jwks.json
  tr -d '\r' <hdr | grep -qix "cache-control: public, max-age=$1" ||
    fail "$2: JWKS $(grep -i '^cache-control' hdr), want max-age=$1"
  ok "$2: JWKS Cache-Control max-age=$1"
}
sed 's/jwks_lead = "60s"/jwks_lead = "20s"/' srv-policy.toml >srv-policy2.toml
cat >>srv-policy2.toml <<'EOF'

[[policy]]
name = "srv-test-2"
priority = 4
strategy = "IMMEDIATE"
cryptoperiod = "90d"

[policy.match]
type = "hmac"
labels = { env = "nowhere" }
EOF
must "policy apply srv-policy2.toml (2 policies, jwks_lead 20s) while the daemon runs" "$K" policy apply srv-policy2.toml
jwks_max_age 30 "before SIGHUP the set in force is unchanged"
kill -HUP "$dpid"
for _ in $(seq 1 50); do grep -q "policies reloaded: 2" daemon-a.log && break; sleep 0.1; done
grep -q "policies reloaded: 2" daemon-a.log || fail "no 'policies reloaded: 2' in the log after SIGHUP"
jwks_max_age 10 "after SIGHUP the new set is in force"
# A stored set that does not parse (written behind keywarden's back): SIGHUP
# and the endpoint keep the set in force and say why.
"$PY" - "$KW_TEST_DIR/keywarden.db" <<'PYEOF' || fail "could not store a broken policy document"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO policy_documents(source, text, applied_at, actor) VALUES ('broken.toml', ?, ?, 'test')",
           ("[[policy]]\nname = ", int(time.time())))
db.commit()
PYEOF
kill -HUP "$dpid"
for _ in $(seq 1 50); do grep -q "policy reload failed, keeping the old set" daemon-a.log && break; sleep 0.1; done
grep -q "policy reload failed, keeping the old set" daemon-a.log ||
  fail "no 'policy reload failed, keeping the old set' in the log after SIGHUP with a broken set"
ok "SIGHUP with a stored set that does not parse: logged, the old set kept"
jwks_max_age 10 "after the failed SIGHUP the last good set is in force"
expect_error 409 POLICY_INVALID "policies reload of a set that does not parse" POST /v1/admin/policies/reload '{}' "$ADMIN"
expect_error 400 UNKNOWN_FIELD "policies reload with a field" POST /v1/admin/policies/reload '{"force": true}' "$ADMIN"
expect_error 400 BAD_JSON "policies reload with a body that is not JSON" POST /v1/admin/policies/reload 'reload please' "$ADMIN"
must "policy apply srv-policy.toml (back to the first set)" "$K" policy apply srv-policy.toml
expect 200 "policies reload" POST /v1/admin/policies/reload "" "$ADMIN"
jcheck "POST /v1/admin/policies/reload with no body -> 1 policy" 'j == {"policies": 1}'
jwks_max_age 30 "after the reload the first set is in force again"
expect 200 "healthz after SIGHUP" GET /healthz
ok "SIGHUP reloads the policies and the daemon keeps serving"

# ==================================================================================
# SIGTERM with requests in flight
# ==================================================================================
# 20 threads (half keep-alive, half a connection per request) verify and sign
# with the service token; SIGTERM after 1.5 s. A request may go unanswered
# (refused or closed before a status line) once the daemon is stopping; a
# request that got a status line must get its complete JSON body.
#
# Also one big answer (GET /v1/admin/keys, > 6 MB: more than the kernel buffers
# hold) to a client that reads nothing for 3 s: it is still being written when
# SIGTERM comes, and must arrive whole.
for i in 1 2 3 4 5 6 7; do
  $PY -c 'import json, sys; i = sys.argv[1]; print(json.dumps({"name": "big-" + i, "scopes": ["scope-%s-%04d-" % (i, n) + "x" * 90 for n in range(9000)]}))' "$i" > big-token.json
  expect 201 "issue big-$i" POST /v1/admin/tokens @big-token.json "$ADMIN"
done
ok "7 tokens with ~1 MB of scopes each issued (GET /v1/admin/keys is now > 6 MB)"
# The admin audit endpoint stores what keywardend has spooled first, so the
# count below is not short by events still in the spool.
expect 200 "GET /v1/admin/audit (stores the spooled events)" GET "/v1/admin/audit?limit=1" "" "$ADMIN"
svc_events_before=$(svc_valid_events)
"${CLIENT[@]}" slowread "$HOST" "$PORT" /v1/admin/keys "$ADMIN" 3 >slowread.json 2>slowread.err &
slowread_pid=$!
# The load must not meet pay-ecdsa's default key limit (1,000/s): 20 threads
# sign faster than that since verifications stopped writing the store.
expect 200 "lift pay-ecdsa limit" PUT /v1/admin/limits '{"key": "pay-ecdsa", "limit": 1000000, "period_ms": 1000, "burst": 1000000}' "$ADMIN"
"${CLIENT[@]}" load "$HOST" "$PORT" "$dpid" SIGTERM 1.5 20 "$SVC" mixed >out 2>err || fail "load client"
cp out load-sigterm.json
wait "$slowread_pid" || { cat slowread.err >&2; fail "slowread client failed"; }
wait_daemon 20
[ "$drc" = 0 ] || fail "keywardend exited $drc after SIGTERM, want 0"
ok "SIGTERM under load: keywardend exits 0"
grep -q "stopped cleanly" daemon-a.log || fail "daemon log lacks 'stopped cleanly'"
ok "daemon log says 'stopped cleanly'"
echo "# SIGTERM load: $(cat load-sigterm.json)"
jcheck "SIGTERM under load: no response was cut off (every status line came with complete JSON)" 'j["cut"] == 0'
jcheck "SIGTERM under load: real traffic before the signal (>= 100 answers, none refused)" \
  'j["ok"] >= 100 and j["noresp_before_signal"] == 0 and set(j["status"]) <= {"200"}'
jcheck "SIGTERM under load: requests in flight at the signal were answered in full" 'j["straddling"] >= 1'
jcheck "SIGTERM under load: every request sent before the signal was answered (none reset, none dropped)" \
  'j["lost_sent_before_signal"] == 0'
cp slowread.json out
echo "# SIGTERM slow reader: $(cat out)"
jcheck "SIGTERM: a 6 MB answer still being written to a slow reader arrives whole" \
  'j["status_line"] == "HTTP/1.1 200 OK" and j["content_length"] > 6000000 and j["received"] == j["content_length"] and j["json_ok"]'
[ ! -e "$SOCK" ] || fail "the unix socket file is still there after a clean stop"
ok "the unix socket file is removed on a clean stop"
must "hsm-keytool jwt verify pay-jwt accepts the JWT from the daemon" "$K" jwt verify pay-jwt --in jwt.txt
$PY -c 'import sys; h, c, s = open("jwt.txt").read().strip().split("."); open("jwt-bad.txt", "w").write(h + "." + c + "." + ("A" if s[0] != "A" else "B") + s[1:])'
if "$K" jwt verify pay-jwt --in jwt-bad.txt >out 2>err; then fail "hsm-keytool accepted a JWT with a changed signature"; fi
ok "hsm-keytool jwt verify rejects the JWT with a changed signature"
must "audit verify after the clean stop" "$K" audit verify
# None lost: each 200 of the load (a verification of svc, or a signature
# authorised by svc) is one VALID key_used event for svc in the log. A
# request answered after its client gave up adds one at most per thread.
answered=$($PY -c 'import json; print(json.load(open("load-sigterm.json"))["ok"])')
svc_events=$(( $(svc_valid_events) - svc_events_before ))
echo "# SIGTERM: $answered answers received, $svc_events VALID events audited for svc meanwhile"
[ "$svc_events" -ge "$answered" ] || fail "SIGTERM lost audit events: $svc_events VALID events for svc < $answered answers"
[ "$svc_events" -le $((answered + 20)) ] || fail "SIGTERM: $svc_events VALID events for svc > $answered answers + 20 in flight"
ok "SIGTERM under load: every answered request is in the audit log ($svc_events events for $answered answers)"
"$K" audit query --event verify_failed --limit 100000 --json >out 2>err || fail "audit query --event verify_failed"
$PY <<'EOF' || fail "hsm-keytool audit query does not show the auth-matrix refusals"
import json, sys
cli = {e["seq"]: e for e in (json.loads(l) for l in open("out") if l.strip())}
for e in json.load(open("matrix-refusals.json"))["events"]:
    c = cli.get(e["seq"])
    if c is None or (c["key"], c["outcome"], c["hash"]) != (e["key"], e["outcome"], e["hash"]):
        sys.exit("seq %d (%s %s) missing or different in hsm-keytool audit query" % (e["seq"], e["key"], e["outcome"]))
EOF
ok "hsm-keytool audit query --event verify_failed shows the 4 auth refusals (same seq and hash)"
"$K" audit query --limit 100000 --json >out 2>err || fail "audit query --json"
for t in "$ADMIN" "$SVC" "$PROV" "$NARROW" "$ADMIN_EXP" "$ADMIN_REV" "$COUNTED_TOK"; do grep -qF "$t" out && fail "a raw token appears in the audit log"; done
ok "no raw token anywhere in the audit log ($(wc -l < out) events)"

# ==================================================================================
# SIGKILL, then restart on the same store
# ==================================================================================
start_daemon daemon-b.log
ok "keywardend B starts on the same store"
expect 200 "B list limits" GET /v1/admin/limits "" "$ADMIN"
jcheck "B: the limits set through the admin API before the restart are still there" \
  "{(t['token_kid'], t['limit'], t['period_ms']) for t in j['tokens']} >= {('$FLOOD_KID', 1, 3600000), ('$SVC_KID', 100000, 1000)}"
"${CLIENT[@]}" burst "$HOST" "$PORT" POST /v1/tokens/verify "" "{\"token\": \"$FLOOD\"}" 2 >out 2>err || fail "B: two flood verifications"
$PY -c "import json, sys
r = [json.loads(l) for l in open('out') if l.strip()]
codes = [x['body']['code'] for x in r]
sys.exit(0 if codes == ['VALID', 'RATE_LIMITED'] else 'codes %s, want VALID then RATE_LIMITED' % codes)" || fail "B: the flood token's 1/hour limit is not enforced after the restart"
ok "B: a token limit set before the restart is enforced after it (1 VALID, then RATE_LIMITED)"
COUNTED=$(cat counted.tok)
expect 200 "B sign" POST /v1/keys/pay-ecdsa/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
ok "B signs"
# 10 threads verify the max_uses-limited token (its rate limit lifted, so every
# answer is VALID and spends a use); SIGKILL after 1.5 s.
expect 200 "B lift counted limit" PUT /v1/admin/limits "{\"token_kid\": \"$COUNTED_KID\", \"limit\": 1000000, \"period_ms\": 1000, \"burst\": 1000000}" "$ADMIN"
"${CLIENT[@]}" load "$HOST" "$PORT" "$dpid" SIGKILL 1.5 10 "$COUNTED" verify >out 2>err || fail "load client (SIGKILL)"
cp out load-sigkill.json
wait_daemon 10
[ "$drc" = 137 ] || fail "keywardend exited $drc after SIGKILL, want 137"
ok "kill -9 under load"
valid=$(jget 'j["valid"]')
echo "# SIGKILL load: $(cat out)"
jcheck "SIGKILL load: answers received before the kill (>= 50, all VALID)" 'j["valid"] >= 50 and j["valid"] == j["ok"] and j["cut"] == 0'
start_daemon daemon-c.log
ok "keywardend C restarts on the store after kill -9 (stale unix socket replaced)"
expect 200 "C healthz" GET /healthz
expect 200 "C verify" POST /v1/tokens/verify "{\"token\": \"$SVC\"}"
jcheck "C: verification works after the restart" 'j["code"] == "VALID"'
VIA=unix
expect 200 "C unix sign" POST /v1/keys/pay-ecdsa/sign "{\"data\": \"$MSG_B64\"}" "$SVC"
VIA=tcp
ok "C: signing over the unix socket works after the restart"
expect 200 "usage counted" GET /v1/admin/keys/counted/usage "" "$ADMIN"
uses=$(jget 'j["versions"][0]["uses"]')
# Measured here: uses (store, after the restart) vs VALID answers received
# before the kill. Every VALID answer was sent after its use was committed, so
# uses >= valid; at most one request per client thread (10) was in flight and
# unanswered at the kill, so uses <= valid + 10.
echo "# SIGKILL: $valid VALID answers received, $uses uses recorded for 'counted' after the restart"
[ "$uses" -ge "$valid" ] || fail "token uses after kill -9: $uses < $valid VALID answers received"
ok "use count after kill -9 ($uses) >= VALID answers received ($valid)"
[ "$uses" -le $((valid + 10)) ] || fail "token uses after kill -9: $uses > $valid VALID answers + 10 in flight"
ok "use count after kill -9 ($uses) <= VALID answers + requests in flight ($((valid + 10)))"
# Read with hsm-keytool: the admin API answers at most 10,000 events a page,
# and a 1.5 s load now writes more. (The events B had only spooled were
# stored by C at start.)
"$K" audit query --key counted --event key_used --limit 100000000 --json >out 2>err || fail "audit query counted"
events=$($PY -c 'import json, sys; print(sum(1 for l in sys.stdin if l.strip() and (lambda e: e["op"] == "verify_token" and e["outcome"] == "VALID")(json.loads(l))))' <out)
echo "# SIGKILL: $events VALID verification events audited for 'counted'"
[ "$events" -ge "$valid" ] && [ "$events" -le "$uses" ] || fail "audited VALID events $events not within [$valid VALID answers, $uses uses]"
ok "audited VALID events after kill -9 ($events) between answers received and uses recorded"
# svc is unlimited: its uses are counted in memory and flushed every
# usage_flush_ms (1 s). The admin answer merges what is pending; SIGTERM
# flushes it, so the store then holds exactly that count.
for _ in 1 2 3; do expect 200 "C verify svc" POST /v1/tokens/verify "{\"token\": \"$SVC\"}"; done
expect 200 "usage svc before SIGTERM" GET /v1/admin/keys/svc/usage "" "$ADMIN"
svc_uses=$(jget 'j["versions"][0]["uses"]')
stop_daemon
[ "$drc" = 0 ] || fail "keywardend C exited $drc after SIGTERM, want 0"
grep -q "stopped cleanly" daemon-c.log || fail "daemon C log lacks 'stopped cleanly'"
ok "C stops cleanly"
"$K" token list --json >out 2>err || fail "token list after SIGTERM"
jcheck "SIGTERM flushed the unlimited token's pending uses: the store holds the $svc_uses the daemon reported" \
  "[t['uses'] for k in j if k['name'] == 'svc' for t in k['tokens']] == [$svc_uses]"
must "audit verify after kill -9, restart and clean stop" "$K" audit verify

# ==================================================================================
# hsm-keytool alongside a running daemon
# ==================================================================================
# Keytool reads (audit verify, audit query, status) and writes (token issue,
# token revoke) while keywardend runs. Each side must see the other's writes,
# and what the daemon acknowledged after the keytool runs must survive kill -9.
start_daemon daemon-d.log
ok "keywardend D starts"
expect 201 "issue visible" POST /v1/admin/tokens '{"name": "visible", "max_uses": 100}' "$ADMIN"
VISIBLE=$(jget 'j["token"]')
# An unlimited token: its use counter may be flushed in batches (every
# usage_flush_interval, 1 s by default), so kill -9 may lose the counts of
# the last interval, never older ones. 5 uses now, 3 more just before the kill.
expect 201 "issue visible-unl" POST /v1/admin/tokens '{"name": "visible-unl"}' "$ADMIN"
VISIBLE_UNL=$(jget 'j["token"]')
for i in 1 2 3 4 5; do
  expect 200 "verify visible-unl $i" POST /v1/tokens/verify "{\"token\": \"$VISIBLE_UNL\"}"
  [ "$(jget 'j["code"]')" = VALID ] || fail "verify visible-unl $i: $(cat out)"
done
t_unl_early=$(date +%s%N)
must "hsm-keytool audit verify while keywardend runs" "$K" audit verify
must "hsm-keytool audit query while keywardend runs" "$K" audit query --event verify_failed --json
must "hsm-keytool status while keywardend runs" "$K" status --json
must "hsm-keytool token issue while keywardend runs" "$K" token issue --name cli-during --scope read_only --out cli-during.tok
CLI_DURING=$(cat cli-during.tok)
expect 200 "verify cli-during" POST /v1/tokens/verify "{\"token\": \"$CLI_DURING\", \"scope\": \"read_only\"}"
jcheck "keywardend verifies a token hsm-keytool issued while it runs" 'j["code"] == "VALID" and j["key"]["name"] == "cli-during"'
for i in 1 2 3 4 5; do
  expect 200 "verify visible $i" POST /v1/tokens/verify "{\"token\": \"$VISIBLE\"}"
  [ "$(jget 'j["code"]')" = VALID ] || fail "verify visible $i: $(cat out)"
done
ok "5 VALID verifications of 'visible' after the keytool runs"
"$K" audit query --key visible --event key_used --json >out 2>err || fail "audit query --key visible"
seen=$(grep -c '"outcome":"VALID"' out || true)
[ "$seen" = 5 ] || fail "hsm-keytool sees $seen of the 5 VALID events keywardend committed after other keytool runs (want 5): the daemon's commits went where other processes cannot see them (see report: core/store/sqlite/database.cpp)"
ok "hsm-keytool sees the daemon's writes made after other keytool runs"
must "hsm-keytool token revoke cli-during while keywardend runs" "$K" token revoke cli-during
expect 200 "verify cli-during revoked" POST /v1/tokens/verify "{\"token\": \"$CLI_DURING\"}"
jcheck "keywardend sees the revocation at once" 'j["code"] == "REVOKED"'
# cli-during is unlimited: its use is counted in memory and flushed within
# usage_flush_ms (1 s); a kill -9 after that interval loses nothing.
sleep 1.5
# At least 2.5 s (over two flush intervals) between the early uses and the kill.
wait_ms=$(( 2500 - ($(date +%s%N) - t_unl_early) / 1000000 ))
[ "$wait_ms" -gt 0 ] && sleep "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
for i in 6 7 8; do
  expect 200 "verify visible-unl $i" POST /v1/tokens/verify "{\"token\": \"$VISIBLE_UNL\"}"
  [ "$(jget 'j["code"]')" = VALID ] || fail "verify visible-unl $i: $(cat out)"
done
kill -KILL "$dpid"
wait_daemon 10
start_daemon daemon-e.log
expect 200 "usage visible-unl" GET /v1/admin/keys/visible-unl/usage "" "$ADMIN"
unl_uses=$(jget 'j["versions"][0]["uses"]')
echo "# kill -9: the unlimited token has $unl_uses of 8 uses recorded (5 older than 2.5 s, 3 just before the kill)"
[ "$unl_uses" -ge 5 ] && [ "$unl_uses" -le 8 ] \
  || fail "after kill -9, 'visible-unl' has $unl_uses uses: want the 5 made > 2.5 s before the kill, at most 8"
ok "after kill -9, an unlimited token lost at most the last flush interval's uses ($unl_uses of 8 kept, >= the 5 older ones)"
jcheck "after kill -9, all 8 VALID verifications of visible-unl are audited (usage API's by_outcome)" \
  'j["by_outcome"].get("VALID") == 8'
expect 200 "usage visible" GET /v1/admin/keys/visible/usage "" "$ADMIN"
[ "$(jget 'j["versions"][0]["uses"]')" = 5 ] || fail "after kill -9, 'visible' has $(jget 'j["versions"][0]["uses"]') uses, want the 5 answered VALID: acknowledged writes were lost"
ok "after kill -9, the 5 acknowledged uses are still there"
expect 200 "usage cli-during" GET /v1/admin/keys/cli-during/usage "" "$ADMIN"
jcheck "after kill -9 more than usage_flush_ms after its use, the unlimited token's use was flushed" \
  'j["versions"][0]["uses"] == 1 and j["versions"][0]["last_used_at"] is not None'
expect 200 "verify cli-during after restart" POST /v1/tokens/verify "{\"token\": \"$CLI_DURING\"}"
jcheck "after kill -9, the keytool revocation still holds" 'j["code"] == "REVOKED"'
stop_daemon
[ "$drc" = 0 ] || fail "keywardend E exited $drc after SIGTERM, want 0"
must "final audit verify (one chain for the daemon's and the keytool's events)" "$K" audit verify
"$K" audit query --key cli-during --json >out 2>err || fail "audit query --key cli-during"
$PY <<'EOF' || fail "the audit log lacks the interleaved keytool and daemon events for cli-during"
import json, sys
ev = [json.loads(l) for l in open("out") if l.strip()]
actors = [(e["actor"].split(":")[0], e["op"], e["outcome"]) for e in ev]
want_in_order = [("cli", "issue", "ok"), ("keywardend", "verify_token", "VALID"), ("keywardend", "verify_token", "REVOKED")]
it = iter(actors)
if not all(any(a == w for a in it) for w in want_in_order):
    sys.exit("cli-during events: %s" % actors)
if not any(a[0] == "cli" and a[1] == "revoke" for a in actors):
    sys.exit("no keytool revoke event for cli-during: %s" % actors)
EOF
ok "audit log interleaves keytool and daemon events for cli-during (issue, VALID, revoke, REVOKED)"

# ==================================================================================
# Daemon F: unix sockets shared with a group
# ==================================================================================
# Both sockets are 0600 by default (checked with daemon A). With
# unix_socket_group / local_socket_group they are 0660 and owned by that
# group: its members can connect, other users still cannot. As root the test
# connects as nobody with and without the group (setpriv); otherwise it
# checks the modes with the user's own group.
if [ "$(id -u)" = 0 ]; then share_group=nogroup; else share_group=$(id -gn); fi
share_gid=$(getent group "$share_group" | cut -d: -f3)
sdir=$(mktemp -d /tmp/kw-sockets.XXXXXX)
trap 'cleanup; rm -rf "$sdir"' EXIT
chmod 0711 "$sdir"  # others may reach the sockets, not list the directory
cat > sockets.toml <<EOF
[server]
unix_socket_group = "$share_group"
local_socket = "$sdir/local.sock"
local_socket_group = "$share_gid"
max_body_bytes = 2048
EOF
saved_sock=$SOCK
SOCK="$sdir/kw.sock"
start_daemon daemon-f.log --config sockets.toml
for s in "$SOCK" "$sdir/local.sock"; do
  [ "$(stat -c '%a %g' "$s")" = "660 $share_gid" ] || fail "$s is $(stat -c '%a %g' "$s"), want 660 $share_gid"
done
ok "with a socket group ($share_group by name, $share_gid by number) both sockets are 0660 and owned by it"
big=$($PY -c 'import json; print(json.dumps({"token": "x" * 3000}))')
expect_error 413 BODY_TOO_LARGE "server.max_body_bytes = 2048: a 3 KB body is refused" POST /v1/tokens/verify "$big"
if [ "$(id -u)" = 0 ]; then
  as_member=(setpriv --reuid=65534 --regid="$share_gid" --clear-groups)
  as_other=(setpriv --reuid=65534 --regid=65533 --clear-groups)
  connect_local='import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])'
  "${as_member[@]}" curl -sS --unix-socket "$SOCK" "http://kw/healthz" >out 2>err || fail "a member of $share_group cannot reach the HTTP socket"
  jcheck "a member of the socket group (nobody:$share_group) gets GET /healthz over the unix socket" 'j["status"] == "ok"'
  "${as_member[@]}" "$PY" -c "$connect_local" "$sdir/local.sock" >out 2>err || fail "a member of $share_group cannot connect to the local socket"
  ok "a member of the socket group connects to the local-protocol socket"
  if "${as_other[@]}" curl -sS --unix-socket "$SOCK" "http://kw/healthz" >out 2>err; then
    fail "a user outside $share_group reached the HTTP socket"
  fi
  grep -qi "permission denied\|couldn't connect" err || fail "a user outside the group failed for another reason than permission: $(cat err)"
  if "${as_other[@]}" "$PY" -c "$connect_local" "$sdir/local.sock" >out 2>err; then
    fail "a user outside $share_group connected to the local socket"
  fi
  grep -q PermissionError err || fail "local socket refused a user outside the group for another reason: $(cat err)"
  ok "a user outside the socket group is refused by both sockets (permission denied)"
else
  ok "# skip connecting as another user (needs root for setpriv)"
fi
stop_daemon
[ "$drc" = 0 ] || fail "keywardend F exited $drc after SIGTERM, want 0"
printf '[server]\nunix_socket_group = "kw-no-such-group"\n' > badgroup.toml
if "$D" --listen "$HOST:0" --unix-socket "$SOCK" --config badgroup.toml >out 2>err; then
  fail "keywardend started with an unknown socket group"
fi
grep -q "server.unix_socket_group: no group named 'kw-no-such-group'" err || fail "unknown socket group: unclear error"
[ ! -e "$SOCK" ] || fail "a refused start left $SOCK behind"
ok "an unknown socket group is refused at start with a clear error, nothing left listening"
# Unknown credentials count towards the brute-force guard like unknown
# tokens sent to verify: 30 AUTH_INVALID from one address, then SLOW_DOWN.
# (A fresh daemon and address: daemon A's unix caller was slowed already.)
start_daemon daemon-f2.log --config sockets.toml
VIA=unix
for i in $(seq 1 30); do
  call GET /v1/admin/keys "" "$("${CLIENT[@]}" token-unknown kw_live)"
  [ "$code" = 401 ] && grep -q AUTH_INVALID out || fail "unknown credential $i: HTTP $code $(cat out)"
done
ok "30 unknown credentials on the admin API -> AUTH_INVALID"
expect_error 429 SLOW_DOWN "brute-force guard: the 31st request from that address, even with the admin token" GET /v1/admin/keys "" "$ADMIN"
VIA=tcp
expect 200 "tcp admin while unix is slowed" GET /v1/admin/keys "" "$ADMIN"
stop_daemon
SOCK=$saved_sock
rm -rf "$sdir"

echo "all $checks server checks passed in $(( $(date +%s) - t_begin )) s"
