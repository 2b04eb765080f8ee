#!/usr/bin/env bash
# The HSM loses a key under a running keywardend (runs under tests/with-token.sh):
#
#   hsm_fault_test.sh /abs/keywardend /abs/hsm-keytool
#
# A key of token residency lives as objects in the token itself. Another
# PKCS#11 application (PyKCS11, logged in to the same SoftHSM token) destroys
# its private key object while keywardend runs. What must hold:
# - signing with it answers 502 HSM_ERROR, and the message names the
#   PKCS#11 function and its return code (CKR_...), never a bare number;
# - the attempt is in the audit log (a key_used "check" event, then one with
#   outcome "error"), and the log still verifies;
# - nothing else is hurt: other keys sign, /healthz and /readyz answer 200,
#   the daemon stops cleanly on SIGTERM;
# - it stays an error (no crash, no stale success) on a second try;
# - rotating the key brings it back: the new version is made in the token.
set -euo pipefail

D=${1:?usage: hsm_fault_test.sh /path/to/keywardend /path/to/hsm-keytool}
K=${2:?usage: hsm_fault_test.sh /path/to/keywardend /path/to/hsm-keytool}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=server_setup.sh
source "$here/server_setup.sh"

must "init" "$K" init
must "issue the admin token" "$K" token issue --name admin --scope admin --out admin.tok
ADMIN=$(cat admin.tok)
start_daemon daemon.log
ok "keywardend started"

expect 201 "create 'lost' (ECDSA P-256, token residency)" POST /v1/admin/keys \
  '{"name": "lost", "type": "ecdsa", "curve": "P-256", "residency": "token"}' "$ADMIN"
expect 201 "create 'kept' (HMAC, token residency)" POST /v1/admin/keys \
  '{"name": "kept", "type": "hmac", "residency": "token"}' "$ADMIN"
MSG=$(printf 'hello' | base64)
expect 200 "sign with 'lost' while its key is in the token" POST /v1/keys/lost/sign "{\"data\": \"$MSG\"}" "$ADMIN"

# Another application destroys the private key object. The PIN comes from the
# environment, as keywarden's own does, never from a command line.
"$PY" - >out 2>err <<'PYEOF' || fail "PyKCS11 could not destroy the private key object of 'lost'"
import os
import PyKCS11

lib = PyKCS11.PyKCS11Lib()
lib.load(os.environ["KEYWARDEN_HSM_MODULE"])
label = os.environ["KEYWARDEN_TOKEN_LABEL"]
slot = next(s for s in lib.getSlotList(tokenPresent=True) if lib.getTokenInfo(s).label.strip() == label)
session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
session.login(os.environ["KEYWARDEN_PIN"])
found = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, "lost")])
assert len(found) == 1, f"expected one private key labelled 'lost', found {len(found)}"
session.destroyObject(found[0])
session.logout()
session.closeSession()
print("destroyed")
PYEOF
ok "another PKCS#11 application destroyed the private key object of 'lost'"

for attempt in first second; do
  expect 502 "sign with 'lost' after its key is gone ($attempt try)" POST /v1/keys/lost/sign "{\"data\": \"$MSG\"}" "$ADMIN"
  jcheck "the $attempt answer is HSM_ERROR naming the PKCS#11 call and its CKR_ code" \
    'j["error"]["code"] == "HSM_ERROR" and "C_Sign" in j["error"]["message"] and "CKR_" in j["error"]["message"]'
done
msg=$(jget 'j["error"]["message"]')
ok "the message: $msg"
# The way back that docs/operations.md gives: rotate, so the key signs with a
# new version made in the token.
expect 200 "rotate 'lost' (IMMEDIATE)" POST /v1/admin/keys/lost/rotate '{"strategy": "IMMEDIATE"}' "$ADMIN"
jcheck "the rotation completed with a new version" 'j["outcome"] == "success" and j["to_kid"] != j["from_kid"]'
new_kid=$(jget 'j["to_kid"]')
expect 200 "sign with 'lost' after the rotation" POST /v1/keys/lost/sign "{\"data\": \"$MSG\"}" "$ADMIN"
jcheck "it signs with the new version" "j['kid'] == '$new_kid'"
expect 200 "sign with 'kept' (its key is still there)" POST /v1/keys/kept/sign "{\"data\": \"$MSG\"}" "$ADMIN"
expect 200 "healthz" GET /healthz
expect 200 "readyz (token logged in, store and audit writable)" GET /readyz
expect 200 "metrics" GET /metrics
hsm_errors=$(awk '/^keywarden_hsm_errors_total\{rv="CKR_/ {n += $2} END {print n + 0}' out)
[ "$hsm_errors" = 2 ] || fail "keywarden_hsm_errors_total adds up to $hsm_errors, want 2: $(grep hsm_errors out)"
ok "metrics count both failures by their CKR name: $(grep '^keywarden_hsm_errors_total' out | tr '\n' ' ')"

stop_daemon
[ "$drc" = 0 ] || fail "keywardend exited $drc after SIGTERM"
ok "SIGTERM: clean exit"
must "audit verify" "$K" audit verify
"$K" audit query --key lost --event key_used --json >out 2>err || fail "audit query --key lost"
errors=$(grep -c '"outcome":"error"' out || true)
[ "$errors" = 2 ] || fail "want 2 key_used events with outcome error for 'lost' (one per failed try), got $errors: $(cat out)"
ok "both failed signatures are in the audit log with outcome error"
echo "all $checks hsm_fault checks passed in $(($(date +%s) - t_begin)) s"
