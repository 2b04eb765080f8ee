#!/usr/bin/env bash
# libkeywarden-pkcs11.so driven by PKCS#11 clients that are not ours:
# opensc's pkcs11-tool, gnutls' p11tool and the libp11 OpenSSL engine.
#
#   tests/with-token.sh bash tests/pkcs11_tool_test.sh /abs/keywardend /abs/hsm-keytool /abs/libkeywarden-pkcs11.so
#
# with-token.sh has exported the token, PIN and store settings and cd'd into
# the scratch directory $KW_TEST_DIR. keywardend serves the local protocol on
# $KW_TEST_DIR/local.sock; the module finds it through KEYWARDEN_LOCAL_SOCKET.
# Every asymmetric signature is checked by the openssl CLI (default
# provider) against the public key `hsm-keytool public-key` prints; HMACs
# against `hsm-keytool sign`. One line per check; stops at the first failure.
#
# The API token is the PIN. pkcs11-tool only takes it on argv (acceptable in
# a test); p11tool reads GNUTLS_PIN; the libp11 engine reads it from an
# openssl config file created 0600.
#
# libp11 0.4.12 (Debian 12) gives up enumerating a token's private keys when
# one of them is Ed25519 (CKK_EC_EDWARDS is unknown to it), so the engine
# logs in with a second credential scoped `sign:eng-*` that sees only the
# eng-* keys: that also checks that a scoped credential sees only its keys.
set -euo pipefail

D=${1:?usage: pkcs11_tool_test.sh /path/to/keywardend /path/to/hsm-keytool /path/to/libkeywarden-pkcs11.so}
K=${2:?usage: pkcs11_tool_test.sh /path/to/keywardend /path/to/hsm-keytool /path/to/libkeywarden-pkcs11.so}
M=${3:?usage: pkcs11_tool_test.sh /path/to/keywardend /path/to/hsm-keytool /path/to/libkeywarden-pkcs11.so}
[ -f "$M" ] || { echo "FAIL: $M does not exist" >&2; exit 1; }
# ok, fail, must, the EXIT trap and stop_daemon come from the keywardend
# tests' shared set-up; this test serves only the local socket.
# shellcheck source=tests/server_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/server_setup.sh"
ENGINE=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
LSOCK="$KW_TEST_DIR/local.sock"
export KEYWARDEN_LOCAL_SOCKET=$LSOCK
unset KEYWARDEN_PKCS11_CONFIG

# refuse DESCRIPTION CMD...: CMD must exit non-zero.
refuse() {
  local what=$1
  shift
  if "$@" >out 2>err; then fail "$what: succeeded, want a failure ($*)"; fi
  ok "$what"
}
# has DESCRIPTION FILE REGEX: FILE must contain a line matching REGEX.
has() { grep -Eq -- "$3" "$2" || fail "$1: no /$3/ in $2"; ok "$1"; }
hasnt() { if grep -Eq -- "$3" "$2"; then fail "$1: /$3/ found in $2"; fi; ok "$1"; }

# start_local_daemon LOGFILE: keywardend on the local socket only; waits for it.
start_local_daemon() {
  dlog=$1
  rm -f "$LSOCK"
  "$D" --listen '' --local-socket "$LSOCK" >"$dlog" 2>&1 &
  dpid=$!
  local i
  for i in $(seq 1 150); do
    [ -S "$LSOCK" ] && return 0
    kill -0 "$dpid" 2>/dev/null || { wait "$dpid" || true; fail "keywardend exited during start-up"; }
    sleep 0.1
  done
  fail "keywardend did not create $LSOCK"
}
# stop_local_daemon: SIGTERM; keywardend must exit 0.
stop_local_daemon() {
  stop_daemon
  [ "$drc" = 0 ] || fail "keywardend exited $drc on SIGTERM"
}

# The primary version's kid of a key, and its hex form (CKA_ID).
kid_of() { "$K" show "$1" --json | $PY -c 'import json, sys; print([v["kid"] for v in json.load(sys.stdin)["versions"] if v["primary"]][0])'; }
hex() { printf %s "$1" | od -An -tx1 | tr -d ' \n'; }
# The number of key_used "sign" events about KEY naming credential CRED.
signs_by() {
  "$K" audit query --event key_used --key "$1" --json | $PY -c '
import json, sys
n = 0
for line in sys.stdin:
    e = json.loads(line)
    d = e.get("details") or {}
    if isinstance(d, str): d = json.loads(d)
    if e.get("op") == "sign" and e.get("outcome") == "ok" and d.get("credential") == sys.argv[1]: n += 1
print(n)' "$2"
}

# keywardend stores spooled audit events every [audit] ingest_ms, so a count
# read right after a sign may be short for a moment: read until it is WANT,
# for up to 3 s, and print the last count.
signs_by_eventually() {
  local n=""
  for _ in $(seq 30); do
    n=$(signs_by "$1" "$2")
    [ "$n" = "$3" ] && break
    sleep 0.1
  done
  echo "$n"
}

P11=(pkcs11-tool --module "$M")

# --- set-up ------------------------------------------------------------------
"$K" init >/dev/null 2>&1 || fail "hsm-keytool init"
for spec in ecdsa:ec1 rsa:rsa1 hmac:hm1 ed25519:ed1 ecdsa:ec-sus ecdsa:eng-ec rsa:eng-rsa ecdsa:eng-rot; do
  "$K" generate --type "${spec%%:*}" --name "${spec#*:}" >/dev/null 2>err || fail "generate $spec"
done
"$K" token issue --name app --scope pkcs11 --out app.token 2>err >/dev/null || fail "token issue app"
"$K" token issue --name eng --scope 'sign:eng-*' --out eng.token 2>err >/dev/null || fail "token issue eng"
PIN=$(cat app.token)
APP_KID=$(kid_of app)
ENG_KID=$(kid_of eng)
for k in ec1 rsa1 ed1 eng-ec eng-rsa eng-rot ec-sus; do
  "$K" public-key "$k" --out "$k.pem" 2>err || fail "public-key $k"
done
printf 'the data keywarden signs through PKCS#11\n' >data
openssl dgst -sha256 -binary data >data.sha256
start_local_daemon daemon.log
ok "keywardend serves the local socket"

# --- pkcs11-tool: slots, token, objects ---------------------------------------
must "pkcs11-tool --list-slots" "${P11[@]}" --list-slots
has "one slot, ID 0x1" out '^Slot 0 \(0x1\)'
has "token label keywarden" out 'token label +: keywarden$'
has "token is login-required and read-only" out 'token flags +:.*login required.*readonly'
must "pkcs11-tool --list-mechanisms" "${P11[@]}" --list-mechanisms
for mech in SHA256-HMAC ECDSA ECDSA-SHA256 RSA-PKCS SHA256-RSA-PKCS RSA-PKCS-PSS SHA256-RSA-PKCS-PSS EDDSA; do
  has "mechanism $mech listed with sign" out "^  $mech, .*sign"
done
must "pkcs11-tool --list-objects without login" "${P11[@]}" --list-objects
hasnt "no object is public before login" out 'Key Object'
must "pkcs11-tool --login --list-objects" "${P11[@]}" --login --pin "$PIN" --list-objects
has "EC private key listed" out '^Private Key Object; EC$'
has "RSA private key listed" out '^Private Key Object; RSA'
has "Ed25519 private key listed" out '^Private Key Object; EC_EDWARDS'
has "HMAC secret key listed" out '^Secret Key Object; Generic secret'
has "RSA public key listed" out '^Public Key Object; RSA 2048 bits'
has "EC public key listed" out '^Public Key Object; EC +EC_POINT 256 bits'
has "ec1 labelled by name" out '^  label: +ec1$'
has "ec1's ID is its kid" out "^  ID: +$(hex "$(kid_of ec1)")$"
has "private keys are sensitive and never extractable" out 'Access: +sensitive, always sensitive, never extractable'
n=$(grep -c '^Private Key Object' out || true)
[ "$n" = 7 ] || fail "7 private keys (ec1 rsa1 ed1 ec-sus eng-ec eng-rsa eng-rot), got $n"
ok "one private key object per asymmetric key ($n)"
refuse "wrong API token refused" "${P11[@]}" --login --pin kw_live_0000000000000000000000000000000000000000000 --list-objects
has "... with CKR_PIN_INCORRECT" err 'CKR_PIN_INCORRECT'

# --- pkcs11-tool: sign with every family; openssl verifies --------------------
sign() {  # sign KEY MECHANISM INPUT OUTPUT [extra pkcs11-tool args]
  local key=$1 mech=$2 in=$3 outf=$4
  shift 4
  must "pkcs11-tool --sign -m $mech with $key" "${P11[@]}" --login --pin "$PIN" --sign -m "$mech" \
    --id "$(hex "$(kid_of "$key")")" -i "$in" -o "$outf" "$@"
}
ec1_signs=0
sign ec1 ECDSA data.sha256 sig.ecdsa --signature-format openssl
ec1_signs=$((ec1_signs + 1))
must "openssl verifies CKM_ECDSA over a SHA-256 digest" openssl pkeyutl -verify -pubin -inkey ec1.pem -in data.sha256 -sigfile sig.ecdsa
for h in 256 384 512; do
  sign ec1 "ECDSA-SHA$h" data "sig.ecdsa$h" --signature-format openssl
  ec1_signs=$((ec1_signs + 1))
  must "openssl verifies CKM_ECDSA_SHA$h" openssl dgst "-sha$h" -verify ec1.pem -signature "sig.ecdsa$h" data
done
sign ec1 ECDSA-SHA256 data sig.ecdsa.raw
ec1_signs=$((ec1_signs + 1))
[ "$(stat -c %s sig.ecdsa.raw)" = 64 ] || fail "P-256 raw signature is r||s, 64 bytes"
ok "CKM_ECDSA_SHA256 gives 64 bytes r||s"
for h in 256 384 512; do
  sign rsa1 "SHA$h-RSA-PKCS" data "sig.rsa$h"
  must "openssl verifies CKM_SHA${h}_RSA_PKCS" openssl dgst "-sha$h" -verify rsa1.pem -signature "sig.rsa$h" data
done
# CKM_RSA_PKCS signs what it is given: here a SHA-256 DigestInfo.
{ printf '\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20'; cat data.sha256; } >data.di
sign rsa1 RSA-PKCS data.di sig.rsapkcs
must "openssl verifies CKM_RSA_PKCS over a DigestInfo" openssl pkeyutl -verify -pubin -inkey rsa1.pem -in data.sha256 -sigfile sig.rsapkcs -pkeyopt digest:sha256
must "openssl recovers the DigestInfo from CKM_RSA_PKCS" openssl pkeyutl -verifyrecover -pubin -inkey rsa1.pem -in sig.rsapkcs -out recovered
cmp -s recovered data.di || fail "recovered DigestInfo differs"
ok "recovered DigestInfo is the input"
for h in 256 384 512; do
  sign rsa1 "SHA$h-RSA-PKCS-PSS" data "sig.pss$h"
  salt=$((h / 8))
  must "openssl verifies CKM_SHA${h}_RSA_PKCS_PSS (MGF1-SHA$h, salt $salt)" openssl dgst "-sha$h" -sigopt rsa_padding_mode:pss \
    -sigopt "rsa_pss_saltlen:$salt" -sigopt "rsa_mgf1_md:sha$h" -verify rsa1.pem -signature "sig.pss$h" data
done
sign rsa1 RSA-PKCS-PSS data.sha256 sig.pssraw --hash-algorithm SHA256 --mgf MGF1-SHA256
must "openssl verifies CKM_RSA_PKCS_PSS over a SHA-256 digest" openssl pkeyutl -verify -pubin -inkey rsa1.pem -in data.sha256 \
  -sigfile sig.pssraw -pkeyopt rsa_padding_mode:pss -pkeyopt digest:sha256 -pkeyopt rsa_pss_saltlen:32
refuse "CKM_RSA_PKCS_PSS with a salt other than the hash length is refused" "${P11[@]}" --login --pin "$PIN" --sign -m RSA-PKCS-PSS \
  --id "$(hex "$(kid_of rsa1)")" -i data.sha256 -o sig.bad --hash-algorithm SHA256 --mgf MGF1-SHA256 --salt-len 20
has "... with CKR_MECHANISM_PARAM_INVALID" err CKR_MECHANISM_PARAM_INVALID
refuse "CKM_SHA256_RSA_PKCS_PSS with MGF1-SHA1 is refused" "${P11[@]}" --login --pin "$PIN" --sign -m SHA256-RSA-PKCS-PSS \
  --id "$(hex "$(kid_of rsa1)")" -i data -o sig.bad --mgf MGF1-SHA1
has "... with CKR_MECHANISM_PARAM_INVALID" err CKR_MECHANISM_PARAM_INVALID
sign ed1 EDDSA data sig.ed
must "openssl verifies CKM_EDDSA (Ed25519)" openssl pkeyutl -verify -pubin -inkey ed1.pem -rawin -in data -sigfile sig.ed
sign hm1 SHA256-HMAC data sig.hmac
"$K" sign hm1 --in data --out sig.hmac.keytool 2>err || fail "hsm-keytool sign hm1"
cmp -s sig.hmac sig.hmac.keytool || fail "HMAC through the module differs from hsm-keytool's"
ok "CKM_SHA256_HMAC equals hsm-keytool sign"
must "pkcs11-tool --verify checks the HMAC through C_Verify" "${P11[@]}" --login --pin "$PIN" --verify -m SHA256-HMAC \
  --id "$(hex "$(kid_of hm1)")" -i data --signature-file sig.hmac
has "... valid" out 'Signature is valid'
# A signature that is wrong must be rejected by the same checks.
cp sig.ed sig.ed.bad
printf '\x00' | dd of=sig.ed.bad bs=1 seek=10 conv=notrunc status=none
refuse "openssl rejects a damaged Ed25519 signature" openssl pkeyutl -verify -pubin -inkey ed1.pem -rawin -in data -sigfile sig.ed.bad
printf 'other data\n' >data2
refuse "openssl rejects an ECDSA signature over other data" openssl dgst -sha256 -verify ec1.pem -signature sig.ecdsa256 data2
# (pkcs11-tool exits 0 either way and says which.)
must "pkcs11-tool --verify of an HMAC over other data" "${P11[@]}" --login --pin "$PIN" --verify -m SHA256-HMAC \
  --id "$(hex "$(kid_of hm1)")" -i data2 --signature-file sig.hmac
has "... C_Verify says invalid" out '^Invalid signature'
refuse "ECDSA mechanism on an RSA key is refused" "${P11[@]}" --login --pin "$PIN" --sign -m ECDSA-SHA256 \
  --id "$(hex "$(kid_of rsa1)")" -i data -o sig.bad
has "... with CKR_KEY_TYPE_INCONSISTENT" err CKR_KEY_TYPE_INCONSISTENT

# --- pkcs11-tool: public key objects --------------------------------------------
for k in ec1 rsa1 ed1; do
  must "pkcs11-tool --read-object --type pubkey of $k" "${P11[@]}" --login --pin "$PIN" --read-object --type pubkey \
    --id "$(hex "$(kid_of "$k")")" -o "$k.p11.der"
  openssl pkey -pubin -in "$k.pem" -outform DER -out "$k.der" 2>err || fail "openssl pkey $k.pem"
  # pkcs11-tool 0.23 writes EC and RSA keys as DER but Ed25519 ones as PEM.
  if head -c 10 "$k.p11.der" | grep -q -- '-----BEGIN'; then
    mv "$k.p11.der" "$k.p11.pem" && openssl pkey -pubin -in "$k.p11.pem" -outform DER -out "$k.p11.der" 2>err || fail "openssl pkey $k.p11.der"
  fi
  cmp -s "$k.p11.der" "$k.der" || fail "$k: the token's public key differs from hsm-keytool public-key"
  ok "$k public key object equals hsm-keytool public-key"
done

# --- audit: every sign is a key_used event naming the credential ---------------
n=$(signs_by_eventually ec1 "$APP_KID" "$ec1_signs")
[ "$n" = "$ec1_signs" ] || fail "ec1: $n key_used sign events naming credential $APP_KID, want $ec1_signs"
ok "each of the $ec1_signs signs with ec1 is a key_used event naming credential $APP_KID"
[ "$(signs_by_eventually ed1 "$APP_KID" 1)" = 1 ] || fail "ed1: want 1 key_used sign event naming $APP_KID"
ok "the Ed25519 sign is a key_used event naming the credential"

# --- p11tool (gnutls) ---------------------------------------------------------
export GNUTLS_PIN=$PIN
must "p11tool --list-tokens" p11tool --provider "$M" --list-tokens
has "p11tool sees token keywarden" out 'URL: pkcs11:.*token=keywarden'
must "p11tool --login --list-all" p11tool --provider "$M" --login --list-all
for o in ec1 rsa1 hm1 ed1; do has "p11tool lists $o" out "URL: pkcs11:.*token=keywarden;.*object=$o;"; done
has "p11tool lists private keys" out 'type=private'
has "p11tool lists public keys" out 'type=public'
for o in ec1 rsa1; do
  must "p11tool --test-sign $o" p11tool --provider "$M" --login --test-sign "pkcs11:token=keywarden;object=$o;type=private"
  has "p11tool: $o signature verifies with the token's public key" err 'Verifying against public key in the token\.\.\. ok'
done
unset GNUTLS_PIN

# --- libp11 engine ---------------------------------------------------------------
(
  umask 077
  cat >engine.cnf <<EOF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $M
PIN = $(cat eng.token)
init = 0
EOF
)
[ "$(stat -c %a engine.cnf)" = 600 ] || fail "engine.cnf is not 0600"
engine_sign() {  # engine_sign OBJECT OUT [pkeyopts...]
  local obj=$1 outf=$2
  shift 2
  must "libp11 engine signs with $obj" env OPENSSL_CONF="$KW_TEST_DIR/engine.cnf" openssl pkeyutl -engine pkcs11 -keyform engine \
    -inkey "pkcs11:token=keywarden;object=$obj;type=private" -sign -in data.sha256 -out "$outf" "$@"
}
engine_sign eng-ec sig.eng-ec
must "openssl verifies the engine's ECDSA signature" openssl pkeyutl -verify -pubin -inkey eng-ec.pem -in data.sha256 -sigfile sig.eng-ec
engine_sign eng-rsa sig.eng-rsa -pkeyopt digest:sha256
must "openssl verifies the engine's RSA PKCS#1 signature" openssl pkeyutl -verify -pubin -inkey eng-rsa.pem -in data.sha256 \
  -sigfile sig.eng-rsa -pkeyopt digest:sha256
engine_sign eng-rsa sig.eng-pss -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32
must "openssl verifies the engine's RSA-PSS signature" openssl pkeyutl -verify -pubin -inkey eng-rsa.pem -in data.sha256 \
  -sigfile sig.eng-pss -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32
refuse "the sign:eng-* credential cannot reach ec1" env OPENSSL_CONF="$KW_TEST_DIR/engine.cnf" openssl pkeyutl -engine pkcs11 -keyform engine \
  -inkey "pkcs11:token=keywarden;object=ec1;type=private" -sign -in data.sha256 -out sig.none
has "... it does not even see it" err 'private key was not found'
[ "$(signs_by_eventually eng-ec "$ENG_KID" 1)" = 1 ] || fail "eng-ec: want 1 key_used sign event naming $ENG_KID"
ok "the engine's sign is a key_used event naming the eng credential"

# --- rotation: the same label signs with the new version ------------------------
old_kid=$(kid_of eng-rot)
engine_sign eng-rot sig.rot1
must "openssl verifies the pre-rotation signature" openssl pkeyutl -verify -pubin -inkey eng-rot.pem -in data.sha256 -sigfile sig.rot1
must "hsm-keytool rotate eng-rot --strategy IMMEDIATE" "$K" rotate eng-rot --strategy IMMEDIATE
new_kid=$(kid_of eng-rot)
[ "$new_kid" != "$old_kid" ] || fail "rotation kept kid $old_kid"
ok "rotation made a new primary version ($old_kid -> $new_kid)"
"$K" public-key eng-rot --kid "$new_kid" --out eng-rot.new.pem 2>err || fail "public-key --kid $new_kid"
"$K" public-key eng-rot --kid "$old_kid" --out eng-rot.old.pem 2>err || fail "public-key --kid $old_kid"
cmp -s eng-rot.old.pem eng-rot.pem || fail "public-key --kid old differs from the pre-rotation PEM"
ok "the old version's public key is still served"
engine_sign eng-rot sig.rot2
must "the post-rotation signature verifies with the new version's key" openssl pkeyutl -verify -pubin -inkey eng-rot.new.pem -in data.sha256 -sigfile sig.rot2
refuse "... and not with the old version's key" openssl pkeyutl -verify -pubin -inkey eng-rot.old.pem -in data.sha256 -sigfile sig.rot2
must "the pre-rotation signature still verifies with the old version's key" openssl pkeyutl -verify -pubin -inkey eng-rot.old.pem -in data.sha256 -sigfile sig.rot1
must "pkcs11-tool --list-objects after the rotation" "${P11[@]}" --login --pin "$PIN" --list-objects --type privkey
grep -A2 '^  label: *eng-rot$' out | grep -q "ID: *$(hex "$new_kid")$" || fail "eng-rot's private key object should carry the new kid"
ok "the private key object's CKA_ID is now the new kid"

# --- lifecycle: suspended and revoked keys refuse at C_SignInit --------------------
sus_id=$(hex "$(kid_of ec-sus)")
sign ec-sus ECDSA-SHA256 data sig.sus1 --signature-format openssl
must "hsm-keytool suspend ec-sus" "$K" suspend ec-sus --reason test
refuse "a suspended key does not sign through the module" "${P11[@]}" --login --pin "$PIN" --sign -m ECDSA-SHA256 --id "$sus_id" -i data -o sig.sus2
has "... C_SignInit reports CKR_KEY_FUNCTION_NOT_PERMITTED" err 'C_SignInit.*CKR_KEY_FUNCTION_NOT_PERMITTED'
must "hsm-keytool resume ec-sus" "$K" resume ec-sus --reason test
sign ec-sus ECDSA-SHA256 data sig.sus3 --signature-format openssl
must "openssl verifies the resumed key's signature" openssl dgst -sha256 -verify ec-sus.pem -signature sig.sus3 data
must "hsm-keytool revoke ec-sus" "$K" revoke ec-sus
refuse "a revoked key does not sign through the module" "${P11[@]}" --login --pin "$PIN" --sign -m ECDSA-SHA256 --id "$sus_id" -i data -o sig.sus4
has "... C_SignInit reports CKR_KEY_FUNCTION_NOT_PERMITTED" err 'C_SignInit.*CKR_KEY_FUNCTION_NOT_PERMITTED'
[ ! -s sig.sus4 ] || fail "a refused sign wrote a signature"
ok "a refused sign writes nothing"
must "hsm-keytool token revoke app" "$K" token revoke app
refuse "a revoked API token no longer logs in" "${P11[@]}" --login --pin "$PIN" --list-objects
has "... with CKR_PIN_INCORRECT" err 'CKR_PIN_INCORRECT'

# --- daemon stopped: the token is gone ----------------------------------------
stop_local_daemon
ok "keywardend stopped"
must "pkcs11-tool --list-slots with keywardend down" "${P11[@]}" --list-slots
has "the slot is still listed" out '^Slot 0 \(0x1\)'
hasnt "... and no token label" out 'token label'
refuse "pkcs11-tool --list-token-slots with keywardend down" "${P11[@]}" --list-token-slots
has "... finds no slot with a token" err '^No slots'
refuse "pkcs11-tool --login --list-objects with keywardend down" "${P11[@]}" --login --pin "$(cat eng.token)" --list-objects
has "... finds no token" err 'No slot with a token was found'
start_local_daemon daemon2.log
must "pkcs11-tool --list-token-slots after restart" "${P11[@]}" --list-token-slots
has "the token is back" out 'token label +: keywarden$'
stop_local_daemon

echo "pkcs11_tool: all $checks checks passed"
