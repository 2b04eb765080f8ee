#!/usr/bin/env bash
# End-to-end tests of hsm-keytool against a private SoftHSM token.
#
#   tests/with-token.sh bash tests/cli_test.sh /abs/path/to/hsm-keytool
#
# with-token.sh has exported the token, PIN and store settings and cd'd into
# the scratch directory $KW_TEST_DIR. Signatures are checked with the real
# openssl CLI, not with keywarden's own code. Stops at the first failure.
set -euo pipefail

K=${1:?usage: cli_test.sh /path/to/hsm-keytool}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -x "$K" ] || { echo "FAIL: $K is not executable" >&2; exit 1; }
: "${KW_TEST_DIR:?run through tests/with-token.sh}"
cd "$KW_TEST_DIR"
PY=/usr/bin/python3
DB=${KEYWARDEN_STORE_URL#sqlite:}
checks=0

fail() {
  echo "FAIL: $*" >&2
  for f in out err; do
    if [ -s "$f" ]; then echo "--- $f:" >&2; head -c 4000 "$f" >&2; echo >&2; fi
  done
  exit 1
}
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }

# run WANT_CODE DESCRIPTION CMD...: runs CMD with stdout in ./out and stderr
# in ./err, and fails unless it exits with WANT_CODE.
run() {
  local want=$1 what=$2
  shift 2
  local got=0
  "$@" >out 2>err || got=$?
  [ "$got" -eq "$want" ] || fail "$what: exit $got, want $want ($*)"
}
# Like run, for commands that must succeed; the description is printed.
must() {
  local what=$1
  shift
  run 0 "$what" "$@"
  ok "$what"
}
expect() {
  local want=$1 what=$2
  shift 2
  run "$want" "$what" "$@"
  ok "$what (exit $want)"
}
stderr_has() { grep -q -- "$1" err || fail "stderr lacks '$1'"; }
json_check() {  # json_check DESCRIPTION PYTHON_EXPR_ON_j < file
  local what=$1 expr=$2
  $PY -c "import json,sys
j = json.load(sys.stdin)
ok = bool($expr)
sys.exit(0 if ok else 1)" <out || fail "$what: JSON check failed: $expr"
  ok "$what"
}

printf 'keywarden cli test message\n' > msg
printf 'keywarden cli test messagE\n' > msg.tampered

# --- init ---------------------------------------------------------------------
must "init creates the root keys" "$K" init
grep -q "created keywarden-root-wrap" out || fail "init did not report the root wrap key"
must "init is idempotent" "$K" init
grep -q "nothing created" out || fail "second init created keys again"

# --- generate every type ------------------------------------------------------
must "generate hmac" "$K" generate --type hmac --name mac --scope a,b --label env=test
must "generate rsa 2048" "$K" generate --type rsa --size 2048 --name rsa2048
grep -q "wrapped" out || fail "rsa2048 should be wrapped by default"
must "generate rsa 3072 (token residency)" "$K" generate --type rsa --size 3072 --name rsa3072 --residency token
grep -q "token" out || fail "rsa3072 should report token residency"
must "generate ecdsa P-256" "$K" generate --type ecdsa --curve P-256 --name ec256
must "generate ecdsa P-384" "$K" generate --type ecdsa --curve P-384 --name ec384
must "generate ed25519" "$K" generate --type ed25519 --name ed
must "generate jwt ES256" "$K" generate --type jwt --alg ES256 --name jwt-es256 --json
json_check "generate --json is JSON with name and kid" 'j["name"] == "jwt-es256" and len(j["versions"][0]["kid"]) > 0'

# --- asymmetric signatures checked with openssl --------------------------------
# verify_dgst NAME DIGEST [pss]: exports the public key, signs msg with the
# CLI and checks the signature with `openssl dgst` (PSS: salt = digest length).
verify_dgst() {
  local name=$1 digest=$2 mode=${3:-}
  local signopts=() sigopts=() tag=""
  if [ "$mode" = pss ]; then
    signopts=(--pss)
    sigopts=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32)
    tag=" (PSS)"
  fi
  must "public-key $name" "$K" public-key "$name"
  cp out "$name.pem"
  grep -q -- "-----BEGIN PUBLIC KEY-----" "$name.pem" || fail "$name.pem is not a PEM public key"
  must "sign $name$tag" "$K" sign "$name" --in msg --out "$name.sig" "${signopts[@]}"
  [ -s "$name.sig" ] || fail "$name.sig is empty"
  openssl dgst "-$digest" "${sigopts[@]}" -verify "$name.pem" -signature "$name.sig" msg >out 2>err ||
    fail "openssl rejects the $name$tag signature"
  ok "openssl dgst -$digest verifies $name$tag"
  if openssl dgst "-$digest" "${sigopts[@]}" -verify "$name.pem" -signature "$name.sig" msg.tampered >out 2>err; then
    fail "openssl accepted the $name$tag signature over tampered data"
  fi
  ok "openssl rejects $name$tag over tampered data"
}
verify_dgst rsa2048 sha256
verify_dgst rsa2048 sha256 pss
verify_dgst rsa3072 sha256
verify_dgst rsa3072 sha256 pss
verify_dgst ec256 sha256
verify_dgst ec384 sha384
verify_dgst jwt-es256 sha256

must "public-key ed" "$K" public-key ed --out ed.pem
grep -q -- "-----BEGIN PUBLIC KEY-----" ed.pem || fail "ed.pem is not a PEM public key"
must "sign ed" "$K" sign ed --in msg --out ed.sig
[ "$(stat -c %s ed.sig)" -eq 64 ] || fail "Ed25519 signature is not 64 bytes"
openssl pkeyutl -verify -pubin -inkey ed.pem -rawin -in msg -sigfile ed.sig >out 2>err ||
  fail "openssl rejects the Ed25519 signature"
ok "openssl pkeyutl verifies ed"
if openssl pkeyutl -verify -pubin -inkey ed.pem -rawin -in msg.tampered -sigfile ed.sig >out 2>err; then
  fail "openssl accepted the Ed25519 signature over tampered data"
fi
ok "openssl rejects ed over tampered data"

# Our own verify agrees with openssl for the asymmetric keys.
must "verify ec256 (DER) with hsm-keytool" "$K" verify ec256 --signature ec256.sig --in msg
must "sign ec256 --raw" "$K" sign ec256 --in msg --out ec256.raw --raw
[ "$(stat -c %s ec256.raw)" -eq 64 ] || fail "raw P-256 signature is not 64 bytes"
must "verify ec256 raw with hsm-keytool" "$K" verify ec256 --signature ec256.raw --in msg --raw
expect 7 "verify ec256 over tampered data" "$K" verify ec256 --signature ec256.sig --in msg.tampered

# --- HMAC ---------------------------------------------------------------------
must "sign mac --base64" "$K" sign mac --in msg --out mac.b64 --base64
$PY -c 'import base64,sys; assert len(base64.b64decode(open(sys.argv[1]).read().strip(), validate=True)) == 32' mac.b64 ||
  fail "mac.b64 is not base64 of 32 bytes"
must "verify mac --base64" "$K" verify mac --signature mac.b64 --in msg --base64
expect 7 "verify mac over a tampered message" "$K" verify mac --signature mac.b64 --in msg.tampered --base64
must "sign mac from stdin" sh -c "\"\$0\" sign mac --base64 < msg > mac2.b64" "$K"
cmp -s mac.b64 mac2.b64 || fail "HMAC from stdin differs from HMAC of --in (should be deterministic)"
expect 2 "public-key mac (symmetric)" "$K" public-key mac

# --- list / show / status ------------------------------------------------------
must "list --json" "$K" list --json
json_check "list --json has every key" \
  'sorted(k["name"] for k in j) == sorted(["mac","rsa2048","rsa3072","ec256","ec384","ed","jwt-es256"])'
json_check "list --json shows residency" \
  '[v["residency"] for k in j if k["name"]=="rsa3072" for v in k["versions"]] == ["token"] and [v["residency"] for k in j if k["name"]=="ed" for v in k["versions"]] == ["token"]'
must "show --json mac" "$K" show mac --json
json_check "show --json names the key" \
  'j["name"] == "mac" and j["type"] == "hmac" and j["scopes"] == ["a","b"] and j["labels"] == {"env":"test"} and j["status"] == "active"'
must "list (text)" "$K" list
grep -q "7 keys" out || fail "text list does not count 7 keys"
must "status --json" "$K" status --json
json_check "status --json shows keys_total" 'j["store"]["keys_total"] == 7 and j["root_keys"]["initialized"] is True'

# --- PIN sources: never argv -----------------------------------------------------
must "works with the PIN only in KEYWARDEN_PIN" env -u KEYWARDEN_PIN_FILE "$K" list
must "works with the PIN only in KEYWARDEN_PIN_FILE" env -u KEYWARDEN_PIN "$K" list

# --- exit codes ----------------------------------------------------------------
expect 4 "wrong PIN" env -u KEYWARDEN_PIN_FILE KEYWARDEN_PIN=wrong "$K" list
stderr_has CKR_PIN_INCORRECT
ok "wrong PIN message names CKR_PIN_INCORRECT"
expect 4 "no PIN at all" env -u KEYWARDEN_PIN -u KEYWARDEN_PIN_FILE "$K" list </dev/null
expect 5 "sign with an unknown key" "$K" sign no-such-key --in msg
expect 5 "show an unknown key" "$K" show no-such-key
expect 2 "generate --type unknown" "$K" generate --type rot13 --name bad
expect 2 "generate without --name" "$K" generate --type hmac
expect 2 "unknown command" "$K" frobnicate
expect 2 "unknown option" "$K" list --colour
expect 2 "rsa --size 1024" "$K" generate --type rsa --size 1024 --name rsa1024
expect 12 "duplicate generate" "$K" generate --type hmac --name mac
expect 3 "token not found" env KEYWARDEN_TOKEN_LABEL=nope "$K" list
stderr_has nope
must "revoke ec384" "$K" revoke ec384
expect 8 "sign with a revoked key" "$K" sign ec384 --in msg --out ec384.after
must "a revoked key's old signature still verifies" "$K" verify ec384 --signature ec384.sig --in msg

printf '[store]\nbusy_timeout_ms = 200\nbogus_setting = 1\n' > bad.toml
expect 10 "config file with an unknown key" "$K" --config bad.toml list
stderr_has "bad.toml:3"
stderr_has bogus_setting
ok "config error names file:line and the key"
# refused_setting FILE TOML STDERR_TEXT: exit 10 (config) and the message.
refused_setting() {
  printf '%b' "$2" >"$1"
  expect 10 "refused: $2" "$K" --config "$1" list
  stderr_has "$3"
}
refused_setting bad-flush.toml '[server]\nusage_flush_ms = 0\n' "usage_flush_ms must be at least 1"
refused_setting bad-spin.toml '[server]\nspin_us = -1\n' "bad-spin.toml:2: spin_us must be a non-negative integer"
refused_setting bad-spin.toml '[server]\nspin_us = 20000\n' "spin_us must be 0 to 10000"
printf '[server]\nusage_flush_ms = 250\nspin_us = 0\n[audit]\ningest_ms = 2\n' > accepted.toml
must "usage_flush_ms = 250, spin_us = 0, ingest_ms = 2 are accepted" "$K" --config accepted.toml list
must "the example configuration is accepted as it stands" "$K" --config "$ROOT/keywarden.toml.example" list

# --- store locked by another process ---------------------------------------------
printf '[store]\nbusy_timeout_ms = 200\n' > lock.toml
rm -f lock.ready
$PY -c '
import sqlite3, sys, time, pathlib
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("BEGIN EXCLUSIVE")
pathlib.Path(sys.argv[2]).touch()
time.sleep(30)
' "$DB" lock.ready &
locker=$!
for _ in $(seq 1 100); do [ -e lock.ready ] && break; sleep 0.1; done
[ -e lock.ready ] || { kill "$locker" 2>/dev/null || true; fail "the locking helper never took the lock"; }
start=$(date +%s%N)
got=0
"$K" --config lock.toml generate --type hmac --name during-lock >out 2>err || got=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
kill "$locker" 2>/dev/null || true
wait "$locker" 2>/dev/null || true
grep -q "database is locked" err || fail "generate while the store is locked: stderr does not say the store is locked"
[ "$elapsed_ms" -lt 1800 ] || fail "generate waited ${elapsed_ms} ms: busy_timeout_ms = 200 from the config was not used"
[ "$got" -eq 6 ] || fail "generate while the store is locked: exit $got, want 6"
ok "generate while another process holds the store (exit $got, ${elapsed_ms} ms)"
[ "$("$K" list --json | $PY -c 'import json,sys; print(sum(k["name"] == "during-lock" for k in json.load(sys.stdin)))')" = 0 ] ||
  fail "a key was recorded although generate failed on the locked store"
ok "nothing was recorded while the store was locked"
must "after the lock is released the same generate works" "$K" --config lock.toml generate --type hmac --name during-lock

# --- file permissions --------------------------------------------------------------
[ "$(stat -c %a "$DB")" = 600 ] || fail "store file mode is $(stat -c %a "$DB"), want 600"
ok "store file is mode 600"
for f in "$DB-wal" "$DB-shm"; do
  if [ -e "$f" ]; then
    [ "$(stat -c %a "$f")" = 600 ] || fail "$f mode is $(stat -c %a "$f"), want 600"
    ok "$(basename "$f") is mode 600"
  fi
done

echo "all $checks CLI checks passed"
