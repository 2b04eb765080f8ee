#!/usr/bin/env bash
# keywarden end-to-end demo: the C++/HSM counterpart of the prototype's
# example_usage.py. Everything happens against a private SoftHSM token made in
# a temporary directory; nothing touches the system token.
#
#   demo/run-demo.sh BUILD_DIR        (./dev demo does the build first)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
K="$build/tools/hsm-keytool/hsm-keytool"
[ -x "$K" ] || { echo "demo: $K not built (run ./dev demo)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/keywarden-demo.XXXXXX")
dpid=""
cleanup() {
  if [ -n "$dpid" ]; then kill "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

if [ -t 1 ]; then B=$'\033[1m'; G=$'\033[32m'; R=$'\033[31m'; N=$'\033[0m'; else B=; G=; R=; N=; fi
step() { printf '\n%s== %s ==%s\n' "$B" "$*" "$N"; }
run() { printf '%s$ %s%s\n' "$B" "$*" "$N"; "$@"; }
ok() { printf '%s✓ %s%s\n' "$G" "$*" "$N"; }
expect_fail() {  # expect_fail CODE CMD...: the command must fail with CODE
  local want=$1; shift
  printf '%s$ %s%s\n' "$B" "$*" "$N"
  set +e; "$@"; local rc=$?; set -e
  [ "$rc" -eq "$want" ] || { printf '%sexpected exit %s, got %s%s\n' "$R" "$want" "$rc" "$N"; exit 1; }
  printf '%s✓ refused as expected (exit %s)%s\n' "$G" "$rc" "$N"
}

# PINs for this throwaway token, passed in the environment only.
export KEYWARDEN_PIN="demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
export KEYWARDEN_SO_PIN="so-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
export KEYWARDEN_STORE_URL="sqlite:$work/keywarden.db"

step "1. A private SoftHSM token and keywarden's root keys"
run "$K" init --softhsm "$work/hsm"
# shellcheck disable=SC1091
source "$work/hsm/env"

step "2. One key of each type, generated inside the token"
run "$K" generate --type hmac    --name webhook-signing --scope read_write --owner payments
run "$K" generate --type rsa     --name legacy-rsa --size 3072 --expires-in 365d
run "$K" generate --type ecdsa   --name edge-ecdsa --curve P-256 --label env=prod
run "$K" generate --type ed25519 --name device-ed25519
run "$K" generate --type jwt     --name session-jwt --alg ES256
run "$K" list

step "3. An API token: issued once, stored only as an HMAC digest computed in the HSM"
run "$K" token issue --name billing-service --scope read_write --expires-in 30d --out "$work/billing.token"
printf 'token file (0600): %s\n' "$(stat -c %a "$work/billing.token")"
run "$K" token verify --in "$work/billing.token"
run "$K" token verify --in "$work/billing.token" --scope read_only
expect_fail 7 "$K" token verify --in "$work/billing.token" --scope admin
echo "kw_live_thisIsNotARealTokenAtAll00000000000000" > "$work/garbage.token"
expect_fail 7 "$K" token verify --in "$work/garbage.token"
run "$K" token issue --name bootstrap-node-7 --provisioning --out "$work/bootstrap.token"
run "$K" token verify --in "$work/bootstrap.token"
expect_fail 7 "$K" token verify --in "$work/bootstrap.token"
run "$K" token list

step "4. Sign in the HSM, verify with plain openssl"
printf 'invoice 2026-0042: 1,250.00 EUR\n' > "$work/invoice.txt"
run "$K" public-key edge-ecdsa --out "$work/edge.pem"
run "$K" sign edge-ecdsa --in "$work/invoice.txt" --out "$work/invoice.ecdsa.sig"
run openssl dgst -sha256 -verify "$work/edge.pem" -signature "$work/invoice.ecdsa.sig" "$work/invoice.txt"
run "$K" public-key legacy-rsa --out "$work/rsa.pem"
run "$K" sign legacy-rsa --pss --in "$work/invoice.txt" --out "$work/invoice.pss.sig"
run openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
    -verify "$work/rsa.pem" -signature "$work/invoice.pss.sig" "$work/invoice.txt"
run "$K" public-key device-ed25519 --out "$work/ed.pem"
run "$K" sign device-ed25519 --in "$work/invoice.txt" --out "$work/invoice.ed.sig"
run openssl pkeyutl -verify -pubin -inkey "$work/ed.pem" -rawin -in "$work/invoice.txt" -sigfile "$work/invoice.ed.sig"
run "$K" sign webhook-signing --in "$work/invoice.txt" --base64 --out "$work/invoice.hmac"
run "$K" verify webhook-signing --in "$work/invoice.txt" --signature "$work/invoice.hmac" --base64
printf 'invoice 2026-0042: 9,999.00 EUR\n' > "$work/forged.txt"
expect_fail 7 "$K" verify webhook-signing --in "$work/forged.txt" --signature "$work/invoice.hmac" --base64

step "5. Lifecycle: suspend, resume, revoke, and what fails afterwards"
run "$K" suspend billing-service --reason "investigating unusual traffic"
expect_fail 7 "$K" token verify --in "$work/billing.token"
run "$K" resume billing-service
run "$K" token verify --in "$work/billing.token"
run "$K" revoke webhook-signing
expect_fail 8 "$K" sign webhook-signing --in "$work/invoice.txt"
run "$K" verify webhook-signing --in "$work/invoice.txt" --signature "$work/invoice.hmac" --base64
run "$K" token revoke billing-service
expect_fail 7 "$K" token verify --in "$work/billing.token"
run "$K" destroy webhook-signing --yes
run "$K" show webhook-signing

step "6. Rotation: JWTs signed before and after still verify against the JWKS"
printf '{"sub":"user-42","scope":"invoices:read"}\n' > "$work/claims.json"
"$K" jwt sign session-jwt --claims "$work/claims.json" > "$work/before.jwt"
run "$K" rotate session-jwt --strategy OVERLAPPING
"$K" jwt sign session-jwt --claims "$work/claims.json" > "$work/after.jwt"
run "$K" jwt verify session-jwt --in "$work/before.jwt"
run "$K" jwt verify session-jwt --in "$work/after.jwt"
run "$K" jwks
run "$K" rotate legacy-rsa --strategy IMMEDIATE
run "$K" rotate history

step "7. The audit trail, and proof it has not been changed"
run "$K" audit query --event verify_failed
run "$K" audit tail -n 8
run "$K" audit verify
run "$K" audit export --out "$work/audit.jsonl" --pubkey-out "$work/audit.pem"
run "$K" audit verify --offline "$work/audit.jsonl" --pubkey "$work/audit.pem"
run "$K" status

step "8. An application signs through the PKCS#11 module: no HSM PIN, policy and audit in keywardend"
# The application holds an API token scoped to the edge-* keys, not the HSM PIN.
run "$K" token issue --name edge-app --scope 'sign:edge-*' --out "$work/app.token"
"$build/server/keywardend" --listen '' --local-socket "$work/local.sock" 2>"$work/keywardend.log" &
dpid=$!
for _ in $(seq 100); do [ -S "$work/local.sock" ] && break; sleep 0.1; done
[ -S "$work/local.sock" ] || { cat "$work/keywardend.log" >&2; exit 1; }
export KEYWARDEN_LOCAL_SOCKET="$work/local.sock"
KW_APP_TOKEN=$(cat "$work/app.token")
export KW_APP_TOKEN
P11=(pkcs11-tool --module "$build/client/pkcs11/libkeywarden-pkcs11.so")
run "${P11[@]}" --login --pin env:KW_APP_TOKEN --list-objects --type privkey
# pkcs11-tool picks a key by CKA_ID: the kid of the version that signs now.
kid=$("$K" show edge-ecdsa --json | python3 -c 'import json,sys; print([v["kid"] for v in json.load(sys.stdin)["versions"] if v["primary"]][0])')
run "${P11[@]}" --login --pin env:KW_APP_TOKEN --sign -m ECDSA-SHA256 --id "$(printf %s "$kid" | od -An -tx1 | tr -d ' \n')" \
    -i "$work/invoice.txt" -o "$work/invoice.p11.sig" --signature-format openssl
run openssl dgst -sha256 -verify "$work/edge.pem" -signature "$work/invoice.p11.sig" "$work/invoice.txt"
run "$K" audit query --key edge-ecdsa --event key_used --json | tail -n 1
kill "$dpid"; wait "$dpid" 2>/dev/null || true; dpid=""

printf '\n%sDemo complete.%s Keys, tokens and the audit log lived in %s (now removed).\n' "$G" "$N" "$work"
