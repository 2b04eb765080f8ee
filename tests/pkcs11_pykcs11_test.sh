#!/usr/bin/env bash
# Sets up keys, API tokens and PEMs, then runs tests/pkcs11_pykcs11_test.py
# (PyKCS11 against libkeywarden-pkcs11.so; it starts, stops and restarts
# keywardend itself).
#
#   tests/with-token.sh bash tests/pkcs11_pykcs11_test.sh /abs/keywardend /abs/hsm-keytool /abs/libkeywarden-pkcs11.so
set -euo pipefail
D=${1:?usage: pkcs11_pykcs11_test.sh /path/to/keywardend /path/to/hsm-keytool /path/to/libkeywarden-pkcs11.so}
K=${2:?usage: pkcs11_pykcs11_test.sh /path/to/keywardend /path/to/hsm-keytool /path/to/libkeywarden-pkcs11.so}
M=${3:?usage: pkcs11_pykcs11_test.sh /path/to/keywardend /path/to/hsm-keytool /path/to/libkeywarden-pkcs11.so}
: "${KW_TEST_DIR:?run through tests/with-token.sh}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$KW_TEST_DIR"
fail() { echo "FAIL: $*" >&2; [ -s err ] && cat err >&2; exit 1; }
"$K" init >/dev/null 2>err || fail "hsm-keytool init"
for spec in ecdsa:ec1 rsa:rsa1 hmac:hm1 ed25519:ed1 ecdsa:rot1; do
  "$K" generate --type "${spec%%:*}" --name "${spec#*:}" >/dev/null 2>err || fail "generate $spec"
done
for k in ec1 rsa1 ed1 rot1; do "$K" public-key "$k" --out "$k.pem" 2>err || fail "public-key $k"; done
"$K" token issue --name app --scope pkcs11 --out app.token >/dev/null 2>err || fail "token issue app"
"$K" token issue --name ro --scope read_only --out ro.token >/dev/null 2>err || fail "token issue ro"
"$K" token issue --name short --scope pkcs11 --expires-in 1s --out short.token >/dev/null 2>err || fail "token issue short"
sleep 1.5  # short.token expires
exec /usr/bin/python3 "$here/pkcs11_pykcs11_test.py" "$D" "$K" "$M"
