#!/usr/bin/env bash
# libkeywarden-pkcs11.so vs SoftHSM directly: ECDSA P-256 and HMAC-SHA256
# signatures per second with 1 and 2 threads, on one private SoftHSM token,
# in alternating rounds in the same run (median of the rounds).
#
#   bench/pkcs11_bench.sh BUILD_DIR [--quick] [--json FILE]
#
# Direct: bench/pkcs11_bench loads SoftHSM, logs in with the HSM PIN and
# signs with token keys made for the purpose (CKM_ECDSA over a SHA-256 digest
# hashed in the process, CKM_SHA256_HMAC). Module: the same loop loads
# libkeywarden-pkcs11.so, logs in with a keywarden API token (scope pkcs11)
# and signs with managed keys through keywardend's local socket, which
# checks policy, rate-limits and audits every signature. Rate limits are
# raised through the admin API first so they do not cap the figures.
#
# Knobs: KW_BENCH_P11_SECONDS (per measurement, default 3), KW_BENCH_P11_ROUNDS (default 3).
set -euo pipefail
build=${1:?usage: bench/pkcs11_bench.sh BUILD_DIR [--quick] [--json FILE]}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "$build" && pwd)
json_out=""
secs=${KW_BENCH_P11_SECONDS:-3}
rounds=${KW_BENCH_P11_ROUNDS:-3}
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) secs=0.5; rounds=1 ;;
    --json) json_out=${2:?--json FILE}; shift ;;
    *) echo "pkcs11_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
D=$build/server/keywardend
K=$build/tools/hsm-keytool/hsm-keytool
B=$build/bench/pkcs11_bench
M=$build/client/pkcs11/libkeywarden-pkcs11.so
for b in "$D" "$K" "$B" "$M"; do
  [ -e "$b" ] || { echo "pkcs11_bench.sh: $b not built" >&2; exit 2; }
done
PY=/usr/bin/python3

work=$(mktemp -d "${TMPDIR:-/tmp}/kwp11bench.XXXXXX")
dpid=""
cleanup() {
  if [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null; then
    kill -TERM "$dpid" 2>/dev/null || true
    wait "$dpid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
rand() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
export KEYWARDEN_PIN=$(rand)
export KEYWARDEN_SO_PIN=$(rand)
export KEYWARDEN_TOKEN_LABEL=kw-p11-bench
"$root/softhsm-conf/make-token.sh" "$work/hsm" >/dev/null
# shellcheck disable=SC1091
source "$work/hsm/env"
export KEYWARDEN_STORE_URL="sqlite:$work/keywarden.db"
cd "$work"

# Baseline keys straight in SoftHSM (token objects found by label), made with
# PyKCS11 so the HSM PIN stays in the environment.
"$PY" - <<'PY'
import os, PyKCS11
from PyKCS11 import *
lib = PyKCS11Lib(); lib.load(os.environ["KEYWARDEN_HSM_MODULE"])
slot = [s for s in lib.getSlotList(tokenPresent=True)
        if lib.getTokenInfo(s).label.strip() == os.environ["KEYWARDEN_TOKEN_LABEL"]][0]
s = lib.openSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)
s.login(os.environ["KEYWARDEN_PIN"])
p256 = bytes([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07])
s.generateKeyPair(
    [(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_TOKEN, True), (CKA_VERIFY, True), (CKA_EC_PARAMS, p256), (CKA_LABEL, "direct-ec")],
    [(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_TOKEN, True), (CKA_SIGN, True), (CKA_SENSITIVE, True), (CKA_PRIVATE, True),
     (CKA_LABEL, "direct-ec")],
    mecha=Mechanism(CKM_EC_KEY_PAIR_GEN))
s.generateKey([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET), (CKA_VALUE_LEN, 32), (CKA_TOKEN, True),
               (CKA_SIGN, True), (CKA_SENSITIVE, True), (CKA_PRIVATE, True), (CKA_LABEL, "direct-mac")],
              mecha=Mechanism(CKM_GENERIC_SECRET_KEY_GEN))
s.logout()
PY

"$K" init >/dev/null
"$K" generate --type ecdsa --name bench-ec >/dev/null
"$K" generate --type hmac --name bench-mac >/dev/null
"$K" token issue --name bench-p11 --scope pkcs11 --out p11.token >/dev/null
"$K" token issue --name bench-admin --scope admin --out admin.token >/dev/null
chmod 600 p11.token admin.token

"$D" --listen '' --unix-socket "$work/http.sock" --local-socket "$work/local.sock" 2>"$work/daemon.log" &
dpid=$!
for _ in $(seq 100); do [ -S "$work/local.sock" ] && [ -S "$work/http.sock" ] && break; sleep 0.1; done
[ -S "$work/local.sock" ] || { cat "$work/daemon.log" >&2; exit 1; }
kid=$("$K" token list --json | "$PY" -c 'import json,sys; print([t for k in json.load(sys.stdin) if k["name"]=="bench-p11" for t in k["tokens"]][0]["kid"])')
admin_hdr="Authorization: Bearer $(cat admin.token)"
for body in "{\"token_kid\": \"$kid\", \"limit\": 100000000, \"period_ms\": 1000}" \
            '{"key": "bench-ec", "limit": 100000000, "period_ms": 1000}' \
            '{"key": "bench-mac", "limit": 100000000, "period_ms": 1000}'; do
  curl -sf --unix-socket "$work/http.sock" -X PUT -H "$admin_hdr" -H 'Content-Type: application/json' \
    -d "$body" http://localhost/v1/admin/limits >/dev/null
done

export KEYWARDEN_LOCAL_SOCKET=$work/local.sock
echo "pkcs11 benchmark: $(nproc) CPU, load $(cut -d' ' -f1-3 /proc/loadavg), ${secs}s x ${rounds} rounds"
results=$work/results.jsonl
: >"$results"
for r in $(seq "$rounds"); do
  for mech in ecdsa hmac; do
    for t in 1 2; do
      if [ "$mech" = ecdsa ]; then dl=direct-ec; ml=bench-ec; else dl=direct-mac; ml=bench-mac; fi
      BENCH_PIN=$KEYWARDEN_PIN "$B" "$KEYWARDEN_HSM_MODULE" "$dl" "$mech" "$secs" "$t" |
        sed "s/^{/{\"face\": \"direct\", \"round\": $r, /" >>"$results"
      BENCH_PIN=$(cat p11.token) "$B" "$M" "$ml" "$mech" "$secs" "$t" |
        sed "s/^{/{\"face\": \"module\", \"round\": $r, /" >>"$results"
    done
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$results" "$load_end" "$json_out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out = []
print(f"{'mechanism':<14}{'threads':>8}{'direct/s':>12}{'module/s':>12}{'ratio':>8}")
for mech in ("ECDSA-SHA256", "SHA256-HMAC"):
    for t in (1, 2):
        d = statistics.median(r["ops_per_s"] for r in rows if r["mechanism"] == mech and r["threads"] == t and r["face"] == "direct")
        m = statistics.median(r["ops_per_s"] for r in rows if r["mechanism"] == mech and r["threads"] == t and r["face"] == "module")
        out.append({"mechanism": mech, "threads": t, "direct_per_s": round(d), "module_per_s": round(m), "ratio": round(m / d, 3)})
        print(f"{mech:<14}{t:>8}{d:>12.0f}{m:>12.0f}{m/d:>8.2f}")
print(f"load average at end: {sys.argv[2]}")
if sys.argv[3]:
    json.dump({"results": out, "rows": rows, "load_end": sys.argv[2]}, open(sys.argv[3], "w"), indent=1)
PY
