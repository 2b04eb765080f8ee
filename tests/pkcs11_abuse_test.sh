#!/usr/bin/env bash
# Starts keywardend with keys ec1, rsa1, hm1 and an API token, then runs
# pkcs11_abuse (ASan+UBSan) against the sanitizer build of the module.
#
#   tests/with-token.sh bash tests/pkcs11_abuse_test.sh /abs/keywardend /abs/hsm-keytool /abs/pkcs11_abuse /abs/libkeywarden-pkcs11-asan.so
#
# meson sets ASAN_OPTIONS (leaks detected, abort on the first report); a
# sanitizer report makes pkcs11_abuse exit non-zero, and so this script.
set -euo pipefail
D=${1:?usage: pkcs11_abuse_test.sh KEYWARDEND HSM_KEYTOOL PKCS11_ABUSE MODULE}
K=${2:?}
A=${3:?}
M=${4:?}
: "${KW_TEST_DIR:?run through tests/with-token.sh}"
cd "$KW_TEST_DIR"
SOCK="$KW_TEST_DIR/local.sock"
export KEYWARDEN_LOCAL_SOCKET=$SOCK
unset KEYWARDEN_PKCS11_CONFIG
dpid=""
fail() { echo "FAIL: $*" >&2; [ -s err ] && cat err >&2; [ -s daemon.log ] && tail -n 20 daemon.log >&2; exit 1; }
cleanup() {
  if [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null; then
    kill -KILL "$dpid" 2>/dev/null || true
    { wait "$dpid"; } 2>/dev/null || true
  fi
}
trap cleanup EXIT
"$K" init >/dev/null 2>err || fail "hsm-keytool init"
for spec in ecdsa:ec1 rsa:rsa1 hmac:hm1; do
  "$K" generate --type "${spec%%:*}" --name "${spec#*:}" >/dev/null 2>err || fail "generate $spec"
done
"$K" token issue --name app --scope pkcs11 --out app.token >/dev/null 2>err || fail "token issue app"
# keywardend is not the program under test: keep the sanitizer settings away from it.
env -u ASAN_OPTIONS -u UBSAN_OPTIONS "$D" --listen '' --local-socket "$SOCK" >daemon.log 2>&1 &
dpid=$!
for _ in $(seq 1 150); do
  [ -S "$SOCK" ] && break
  kill -0 "$dpid" 2>/dev/null || fail "keywardend exited during start-up"
  sleep 0.1
done
[ -S "$SOCK" ] || fail "keywardend did not create $SOCK"
"$A" "$M" app.token
kill -TERM "$dpid"
wait "$dpid" || fail "keywardend exited $? on SIGTERM"
dpid=""
