#!/usr/bin/env bash
# Runs keywarden's benchmarks against a fresh private SoftHSM token.
#
#   bench/run.sh BUILD_DIR [--quick]
#
# BUILD_DIR holds a build with bench/token_bench (`./dev bench` makes an
# optimised one). The token, its PINs and the SQLite stores live in a
# temporary directory that is removed afterwards; the system token is never
# touched. Each phase runs in its own process:
#   sign              ops/s through the token layer and KeyService vs raw PKCS#11
#   scale-keyservice  KeyService lookup + HMAC with 100 / 1,000 / 10,000 keys
#   scale-softhsm     C_FindObjects by label + HMAC over as many token objects
# Results are printed as tables; with BENCH_JSON=FILE they are also written
# there as JSON. --quick (smoke run: 100 and 1,000 keys, short loops) is for
# checking the harness, not for figures. KW_BENCH_KEEP=1 keeps the scratch
# directory (token, stores) for inspection. Knobs for token_bench itself
# (KW_BENCH_SECONDS, KW_BENCH_ROUNDS, KW_BENCH_SIZES, KW_BENCH_CREATE_BUDGET)
# pass through. See docs/performance.md.
set -euo pipefail
build=${1:?usage: bench/run.sh BUILD_DIR [--quick]}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "$build" && pwd)
bin=$build/bench/token_bench
[ -x "$bin" ] || { echo "bench/run.sh: $bin not built (configure with -Dbench=true)" >&2; exit 2; }

for arg in "$@"; do
  case "$arg" in
    --quick)
      export KW_BENCH_SIZES=${KW_BENCH_SIZES:-100,1000}
      export KW_BENCH_SECONDS=${KW_BENCH_SECONDS:-0.3}
      ;;
    *) echo "bench/run.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kwbench.XXXXXX")
if [ "${KW_BENCH_KEEP:-0}" = 1 ]; then
  trap 'echo "scratch directory kept: $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
rand() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
export KEYWARDEN_PIN=${KEYWARDEN_PIN:-$(rand)}
export KEYWARDEN_SO_PIN=${KEYWARDEN_SO_PIN:-$(rand)}
export KEYWARDEN_TOKEN_LABEL=kw-bench
"$root/softhsm-conf/make-token.sh" "$work/hsm" >/dev/null
# shellcheck disable=SC1091
source "$work/hsm/env"

softhsm_version=$(dpkg-query -W -f='${Version}' softhsm2 2>/dev/null || echo unknown)
echo "keywarden benchmarks: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), SoftHSM $softhsm_version"
echo "token: private SoftHSM token in $work/hsm; per-variant time ${KW_BENCH_SECONDS:-1.5} s in ${KW_BENCH_ROUNDS:-3} alternating rounds"

# Other processes skew every figure on a 2-core machine: say how busy it was.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average at start: $load_start"
case "$load_start" in 0.*) ;; *) echo "WARNING: the machine is busy; figures will be low and noisy" >&2 ;; esac
start=$(date +%s)
for phase in sign scale-keyservice scale-softhsm; do
  "$bin" "$phase" --dir "$work" --json "$work/$phase.json"
done
elapsed=$(( $(date +%s) - start ))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$work" "$elapsed" "$softhsm_version" "$root" "$load_start" "$load_end" <<'PY'
import json, os, platform, subprocess, sys

work, elapsed, softhsm, root, load_start, load_end = sys.argv[1:7]
elapsed = int(elapsed)
phases = {p: json.load(open(os.path.join(work, p + ".json"))) for p in ("sign", "scale-keyservice", "scale-softhsm")}
ks, hsm = phases["scale-keyservice"], phases["scale-softhsm"]

def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"

def mem_gib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None

print("\nLookup + HMAC-SHA256 by name: time per operation (us), random names")
print(f"  {'keys':>7} {'KeyService::sign':>17} {'store lookup':>13} {'SoftHSM find+sign':>18} {'SoftHSM find':>13} {'SoftHSM/ours':>13}")
by_n = {s["keys"]: s for s in hsm["sizes"]}
rows = []
for s in ks["sizes"]:
    n = s["keys"]
    ours = s["lookup_sign"]["us_per_op"]
    h = by_n.get(n)
    theirs = h["lookup_sign"]["us_per_op"] if h else None
    rows.append({"keys": n, "keyservice_us": ours, "store_lookup_us": s["lookup_only"]["us_per_op"],
                 "softhsm_find_sign_us": theirs,
                 "softhsm_find_us": h["lookup_only"]["us_per_op"] if h else None,
                 "softhsm_over_ours": theirs / ours if theirs else None})
    fmt = lambda v, w: f"{v:>{w}.1f}" if v is not None else f"{'-':>{w}}"
    print(f"  {n:>7} {fmt(ours, 17)} {fmt(rows[-1]['store_lookup_us'], 13)} {fmt(theirs, 18)} "
          f"{fmt(rows[-1]['softhsm_find_us'], 13)} {fmt(rows[-1]['softhsm_over_ours'], 13)}")
for n, h in by_n.items():
    if n not in {s["keys"] for s in ks["sizes"]}:
        print(f"  {n:>7} {'-':>17} {'-':>13} {h['lookup_sign']['us_per_op']:>18.1f} {h['lookup_only']['us_per_op']:>13.1f}")

ratio = ks["ratio_largest_to_smallest"]
small, large = ks["sizes"][0]["keys"], ks["sizes"][-1]["keys"]
holds = ratio <= 2.0
print(f"\n  KeyService lookup+HMAC, {large} keys vs {small} keys: {ratio:.2f}x "
      f"(median latency {ks['p50_ratio_largest_to_smallest']:.2f}x)  -> 2x target {'HOLDS' if holds else 'MISSED'}")
print(f"  KeyService store lookup alone, {large} keys vs {small} keys: {ks['lookup_only_ratio_largest_to_smallest']:.2f}x")
print(f"  SoftHSM find+HMAC, {hsm['sizes'][-1]['keys'] if hsm['sizes'] else 0} keys vs {small} keys: "
      f"{hsm['ratio_largest_to_smallest']:.2f}x" + ("  (token object creation budget ran out)" if hsm["truncated"] else ""))
print(f"  KeyService::generate: {ks['generate_total']['keys_per_s']:.0f} keys/s over {ks['generate_total']['keys']} keys")
print(f"  total benchmark time: {elapsed} s; load average (1/5/15 min) at start {load_start}, at end {load_end}")

result = {
    "machine": {
        "nproc": os.cpu_count(), "cpu_model": cpu_model(), "mem_gib": mem_gib(),
        "os": open("/etc/debian_version").read().strip() if os.path.exists("/etc/debian_version") else platform.platform(),
        "kernel": platform.release(), "softhsm2": softhsm,
    },
    "git_rev": subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip() or None,
    "elapsed_s": elapsed,
    "loadavg_start": load_start, "loadavg_end": load_end,
    "sign": phases["sign"],
    "scale_keyservice": ks,
    "scale_softhsm": hsm,
    "summary": {"lookup_sign_us": rows, "keyservice_ratio_largest_to_smallest": ratio, "target_2x_holds": holds,
                "keyservice_p50_ratio_largest_to_smallest": ks["p50_ratio_largest_to_smallest"],
                "keyservice_lookup_only_ratio_largest_to_smallest": ks["lookup_only_ratio_largest_to_smallest"],
                "softhsm_ratio_largest_to_smallest": hsm["ratio_largest_to_smallest"],
                "softhsm_truncated": hsm["truncated"],
                "keyservice_generate_keys_per_s": ks["generate_total"]["keys_per_s"]},
}
out = os.environ.get("BENCH_JSON")
if out:
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"  JSON written to {out}")
PY

# --------------------------------------------------------------------------
# Audit log, rotation and keywardend: bench/audit_bench (append, verify),
# bench/rotation_bench and bench/server_bench.sh (keywardend driven by
# bench/load_gen over 127.0.0.1), each in its own process, on a second fresh
# private token (the scale phases above leave thousands of objects in the
# first). --quick shrinks these too. Knobs are listed at the head of each
# source file; figures and how to read them are in docs/performance.md.
quick=0
for arg in "$@"; do [ "$arg" = --quick ] && quick=1; done
for b in audit_bench rotation_bench load_gen; do
  [ -x "$build/bench/$b" ] || { echo "bench/run.sh: $build/bench/$b not built" >&2; exit 2; }
done
if [ "$quick" = 1 ]; then
  export KW_BENCH_VERIFY_EVENTS=${KW_BENCH_VERIFY_EVENTS:-20000} KW_BENCH_ONLINE_EVENTS=${KW_BENCH_ONLINE_EVENTS:-5000}
  export KW_BENCH_ROTATE_HMAC=${KW_BENCH_ROTATE_HMAC:-100} KW_BENCH_ROTATE_ECDSA=${KW_BENCH_ROTATE_ECDSA:-10}
fi
export KEYWARDEN_TOKEN_LABEL=kw-bench2
"$root/softhsm-conf/make-token.sh" "$work/hsm2" >/dev/null
# shellcheck disable=SC1091
source "$work/hsm2/env"
load_start2=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "audit / rotation / keywardend benchmarks: fresh private token in $work/hsm2; load average at start: $load_start2"
case "$load_start2" in 0.*|1.*) ;; *) echo "WARNING: the machine is busy; figures will be low and noisy" >&2 ;; esac
start2=$(date +%s)
"$build/bench/audit_bench" append --dir "$work" --json "$work/audit-append.json"
"$build/bench/audit_bench" verify --dir "$work" --json "$work/audit-verify.json"
rm -f "$work"/audit-verify.db*  # about half a gigabyte for 1,000,000 events
"$build/bench/rotation_bench" --dir "$work" --json "$work/rotation.json"
server_args=(--json "$work/server.json")
[ "$quick" = 1 ] && server_args+=(--quick)
KW_BENCH_WORK="$work" "$here/server_bench.sh" "$build" "${server_args[@]}"
elapsed2=$(( $(date +%s) - start2 ))
load_end2=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "  audit / rotation / keywardend: $elapsed2 s; load average (1/5/15 min) at start $load_start2, at end $load_end2"

python3 - "$work" "$elapsed2" "$load_start2" "$load_end2" <<'PY'
import json, os, sys
work, elapsed, load_start, load_end = sys.argv[1:5]
out = os.environ.get("BENCH_JSON")
if out:
    result = json.load(open(out)) if os.path.exists(out) else {}
    for key, name in (("audit_append", "audit-append"), ("audit_verify", "audit-verify"),
                      ("rotation", "rotation"), ("keywardend", "server")):
        result[key] = json.load(open(os.path.join(work, name + ".json")))
    result["audit_rotation_server"] = {"elapsed_s": int(elapsed), "loadavg_start": load_start, "loadavg_end": load_end}
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"  audit, rotation and keywardend figures added to {out}")
PY
