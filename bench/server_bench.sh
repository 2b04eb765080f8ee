#!/usr/bin/env bash
# keywardend under load: POST /v1/tokens/verify with one valid API token over
# keep-alive connections on 127.0.0.1, at concurrency 1, 2, 4, 8, 16, 32, 64
# (closed loop; the load generator drives them all from one epoll thread, so
# it takes little of the CPUs it shares with keywardend), once more at the
# peak level with the client under SCHED_BATCH (a diagnostic: what the
# client's wake-ups cost the server), then at fixed rates of half and a
# quarter of the peak on the peak level's connections, for longer (latency
# from the intended send time; also split into
# the client's own lateness and the time from the real send, see
# bench/load_gen.cpp); raw SoftHSM HMAC ops/s of the same token
# (under the module's own locking and under keywarden's) measured before and after, and one verification in process piece by piece
# (audit_bench verify-path), in the same run. keywardend's CPU time per request
# is read from /proc around every load run.
#
#   bench/server_bench.sh BUILD_DIR [--quick] [--json FILE]
#
# BUILD_DIR holds bench/load_gen, bench/audit_bench, server/keywardend and
# tools/hsm-keytool/hsm-keytool. Called by bench/run.sh after it made a
# private SoftHSM token (SOFTHSM2_CONF etc. exported, scratch dir in
# KW_BENCH_WORK). Run alone, it makes its own private token in a temporary
# directory; the system token is never touched.
#
# Knobs: KW_BENCH_SERVER_SECONDS (per concurrency level, default 4),
# KW_BENCH_SERVER_CONCURRENCY (default 1,2,4,8,16,32,64), KW_BENCH_SERVER_THREADS
# (keywardend --threads, default nproc = its default), KW_BENCH_SERVER_PACED_CONNS
# (connections for the fixed-rate runs, default: those of the peak level),
# KW_BENCH_SERVER_PACED_SECONDS (length of each fixed-rate run, default 20).
#
# Why the fixed-rate runs use the peak's connections: a client holding only a
# few keep-alive connections cannot offer a high rate without queueing its own
# requests behind answers still due (HTTP/1.1 sends one at a time), and that
# queueing counts as latency. The rate is halved, not the client. Why 20 s: a
# p99 over 4 s moves by a third from run to run on this kind of machine (one
# stall of the VM of a few ms decides it), over 20 s by a few percent. The
# earlier setup (16 connections, the level's seconds) is run once more as a
# diagnostic.
set -euo pipefail
build=${1:?usage: bench/server_bench.sh BUILD_DIR [--quick] [--json FILE]}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "$build" && pwd)
json_out=""
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --json) json_out=${2:?--json FILE}; shift ;;
    *) echo "server_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
D=$build/server/keywardend
K=$build/tools/hsm-keytool/hsm-keytool
LOAD=$build/bench/load_gen
AB=$build/bench/audit_bench
for b in "$D" "$K" "$LOAD" "$AB"; do
  [ -x "$b" ] || { echo "server_bench.sh: $b not built" >&2; exit 2; }
done
PY=/usr/bin/python3

secs=${KW_BENCH_SERVER_SECONDS:-4}
levels=${KW_BENCH_SERVER_CONCURRENCY:-1,2,4,8,16,32,64}
threads=${KW_BENCH_SERVER_THREADS:-$(nproc)}
paced_conns=${KW_BENCH_SERVER_PACED_CONNS:-}
paced_secs=${KW_BENCH_SERVER_PACED_SECONDS:-20}
hmac_secs=1.5
warm=0.5
if [ "$quick" = 1 ]; then secs=0.5; hmac_secs=0.3; warm=0.2; paced_secs=1; fi

own_work=""
dpid=""
cleanup() {
  if [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null; then
    kill -KILL "$dpid" 2>/dev/null || true
    wait "$dpid" 2>/dev/null || true
  fi
  if [ -n "$own_work" ] && [ "${KW_BENCH_KEEP:-0}" != 1 ]; then rm -rf "$own_work"; fi
}
trap cleanup EXIT
if [ -z "${SOFTHSM2_CONF:-}" ]; then
  own_work=$(mktemp -d "${TMPDIR:-/tmp}/kwsrvbench.XXXXXX")
  rand() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
  export KEYWARDEN_PIN=${KEYWARDEN_PIN:-$(rand)}
  export KEYWARDEN_SO_PIN=${KEYWARDEN_SO_PIN:-$(rand)}
  export KEYWARDEN_TOKEN_LABEL=kw-bench
  "$root/softhsm-conf/make-token.sh" "$own_work/hsm" >/dev/null
  # shellcheck disable=SC1091
  source "$own_work/hsm/env"
fi
if [ -n "${KW_BENCH_WORK:-}" ]; then
  work=$KW_BENCH_WORK
else
  [ -n "$own_work" ] || own_work=$(mktemp -d "${TMPDIR:-/tmp}/kwsrvbench.XXXXXX")
  work=$own_work
fi
w="$work/server"
mkdir -p "$w"
export KEYWARDEN_STORE_URL="sqlite:$w/keywarden.db"

# Root keys (idempotent), an admin token (to raise the rate limit) and the
# service token every request verifies. Written while no daemon runs.
"$K" init >/dev/null
"$K" token issue --name bench-admin --scope admin --out "$w/admin.tok" >/dev/null
"$K" token issue --name bench-svc --scope read_write --out "$w/svc.tok" >/dev/null

echo
echo "keywardend: POST /v1/tokens/verify, one valid token, keep-alive, 127.0.0.1; keywardend --threads $threads"
# The raw rate under both of the module's lockings (a library is initialised
# once per process, hence one audit_bench run each): the baseline is the best
# of them, so keywarden's own mutexes (token/locking.hpp) raise the bar they
# are measured against as well.
raw_hmac() {
  for locking in os keywarden; do
    echo "  raw SoftHSM HMAC of the same token, $1 the load, module locking $locking:"
    KEYWARDEN_HSM_LOCKING=$locking KW_BENCH_SECONDS=$hmac_secs "$AB" hmac --dir "$w" --json "$w/hmac-$1-$locking.json" |
      grep -v -e '^$' -e '^Raw SoftHSM' -e '^  ---' -e '^  variant' | sed 's/^/  /'
  done
}
raw_hmac before

echo "  one verification in process (TokenService::verify, no HTTP), same token, before the load:"
KW_BENCH_SECONDS=$hmac_secs "$AB" verify-path --dir "$w" --json "$w/verify-path.json" | grep -v -e '^$' -e '^One API-token' | sed 's/^/  /'

PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$D" --listen "127.0.0.1:$PORT" --threads "$threads" >"$w/keywardend.log" 2>&1 &
dpid=$!
up=0
for _ in $(seq 1 150); do
  if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz"; then up=1; break; fi
  kill -0 "$dpid" 2>/dev/null || break
  sleep 0.1
done
[ "$up" = 1 ] || { echo "server_bench.sh: keywardend did not come up:" >&2; tail -n 20 "$w/keywardend.log" >&2; exit 1; }

# The default per-token limit (100/s, burst 100) would cap the run: raise it.
code=$(curl -sS -o "$w/limits.out" -w '%{http_code}' -X PUT --max-time 10 \
  -H "Authorization: Bearer $(cat "$w/admin.tok")" -H 'Content-Type: application/json' \
  --data-binary '{"limit":100000000,"period_ms":1000,"burst":100000000}' "http://127.0.0.1:$PORT/v1/admin/limits")
[ "$code" = 200 ] || { echo "server_bench.sh: PUT /v1/admin/limits answered $code: $(cat "$w/limits.out")" >&2; exit 1; }
# keywardend spools audit events and stores them every few ms: reading the
# log through the admin API first stores what is spooled (the PUT's event).
curl -sSf -o /dev/null --max-time 10 -H "Authorization: Bearer $(cat "$w/admin.tok")" \
  "http://127.0.0.1:$PORT/v1/admin/audit?limit=1"
seq_before=$($PY -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select coalesce(max(seq),0) from audit_events').fetchone()[0])" "$w/keywarden.db")

# keywardend's CPU time (user + system, clock ticks) around each run: CPU
# per request, and whether the daemon was busy or waiting.
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$dpid/stat"; }
echo "  load (warm-up ${warm} s per run, then ${secs} s measured):"
"$LOAD" --port "$PORT" --token-file "$w/svc.tok" --connections 4 --seconds 1 --warmup 0 --json "$w/warmup.json" >/dev/null
IFS=, read -r -a conc <<<"$levels"
: >"$w/cpu.txt"
for c in "${conc[@]}"; do
  t0=$(cpu_ticks)
  "$LOAD" --port "$PORT" --token-file "$w/svc.tok" --connections "$c" --seconds "$secs" --warmup "$warm" \
    --json "$w/load-c$c.json"
  echo "c$c $(( $(cpu_ticks) - t0 ))" >>"$w/cpu.txt"
done
# The best level: its rate and its connection count.
read -r peak peak_c < <($PY -c "
import json, sys
best = max(((json.load(open(f'$w/load-c{c}.json'))['ok_throughput'], c) for c in sys.argv[1:]))
print(*best)" "${conc[@]}")
# Diagnostic, not the figure the targets are judged on: the same peak level
# with the client under SCHED_BATCH, so its wake-ups do not preempt
# keywardend's workers (what a client on another machine would not do).
t0=$(cpu_ticks)
"$LOAD" --port "$PORT" --token-file "$w/svc.tok" --connections "$peak_c" --seconds "$secs" --warmup "$warm" \
  --sched-batch --json "$w/load-batch.json"
echo "batch $(( $(cpu_ticks) - t0 ))" >>"$w/cpu.txt"
half=$($PY -c "print(round($peak / 2))")
[ -n "$paced_conns" ] || paced_conns=$peak_c
t0=$(cpu_ticks)
"$LOAD" --port "$PORT" --token-file "$w/svc.tok" --connections "$paced_conns" --rate "$half" --seconds "$paced_secs" \
  --warmup "$warm" --json "$w/load-paced.json"
echo "paced $(( $(cpu_ticks) - t0 ))" >>"$w/cpu.txt"
# Diagnostic: half the peak in the earlier setup (16 connections, the
# level's seconds), for comparison with figures measured that way.
t0=$(cpu_ticks)
"$LOAD" --port "$PORT" --token-file "$w/svc.tok" --connections 16 --rate "$half" --seconds "$secs" \
  --warmup "$warm" --json "$w/load-paced16.json"
echo "paced16 $(( $(cpu_ticks) - t0 ))" >>"$w/cpu.txt"
# A quarter of the peak too: where the tail stands with twice the headroom.
quarter=$($PY -c "print(max(1, round($peak / 4)))")
t0=$(cpu_ticks)
"$LOAD" --port "$PORT" --token-file "$w/svc.tok" --connections "$paced_conns" --rate "$quarter" --seconds "$paced_secs" \
  --warmup "$warm" --json "$w/load-quarter.json"
echo "quarter $(( $(cpu_ticks) - t0 ))" >>"$w/cpu.txt"

kill -TERM "$dpid"
for _ in $(seq 1 200); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
drc=0
wait "$dpid" || drc=$?
dpid=""
[ "$drc" = 0 ] || { echo "server_bench.sh: keywardend exited $drc:" >&2; tail -n 20 "$w/keywardend.log" >&2; exit 1; }
seq_after=$($PY -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select coalesce(max(seq),0) from audit_events').fetchone()[0])" "$w/keywarden.db")

raw_hmac after

$PY - "$w" "$json_out" "$seq_before" "$seq_after" "$threads" "$hz" "$warm" "${conc[@]}" <<'PY'
import json, os, sys
w, out, seq_before, seq_after, threads, hz, warm = sys.argv[1:8]
hz, warm = int(hz), float(warm)
levels = [int(c) for c in sys.argv[8:]]
ticks = dict(line.split() for line in open(os.path.join(w, "cpu.txt")))
load = {c: json.load(open(os.path.join(w, f"load-c{c}.json"))) for c in levels}
paced = json.load(open(os.path.join(w, "load-paced.json")))
paced16 = json.load(open(os.path.join(w, "load-paced16.json")))
quarter = json.load(open(os.path.join(w, "load-quarter.json")))
batch = json.load(open(os.path.join(w, "load-batch.json")))
warmup = json.load(open(os.path.join(w, "warmup.json")))
hmac = {(when, lk): json.load(open(os.path.join(w, f"hmac-{when}-{lk}.json")))
        for when in ("before", "after") for lk in ("os", "keywarden")}
vp = json.load(open(os.path.join(w, "verify-path.json")))
# Baseline: the pepper HMAC (a token object, the key every verification
# MACs with), best thread count, mean of before and after the load, under
# the module locking that gives the higher rate.
def raw(kind):
    return max((hmac[("before", lk)][kind] + hmac[("after", lk)][kind]) / 2 for lk in ("os", "keywarden"))
raw_token = raw("best_token_object_ops_per_s")
raw_session = raw("best_session_key_ops_per_s")
peak_c = max(levels, key=lambda c: load[c]["ok_throughput"])
peak = load[peak_c]["ok_throughput"]
requests = sum(r["sent_including_warmup"] for r in list(load.values()) + [paced, paced16, quarter, warmup, batch])
events = int(seq_after) - int(seq_before)

def cpu(r, key):
    # keywardend CPU per request (us) and CPU cores it kept busy over the run
    t = int(ticks[key]) / hz
    r["daemon_cpu_us_per_request"] = 1e6 * t / max(1, r["sent_including_warmup"])
    r["daemon_cpu_cores"] = t / (r["seconds"] + warm)

print(f"\n  {'conns':>5} {'req/s':>9} {'p50 us':>9} {'p99 us':>9} {'p99.9 us':>9} {'ok':>8} {'vs raw HMAC':>12}"
      f" {'daemon CPU us/req':>18} {'daemon cores':>13}")
print(f"  {'-' * 99}")
for c in levels:
    r = load[c]
    cpu(r, f"c{c}")
    print(f"  {c:>5} {r['ok_throughput']:>9.0f} {r['p50_us']:>9.0f} {r['p99_us']:>9.0f} {r['p999_us']:>9.0f} "
          f"{r['ok'] / max(1, r['requests']):>8.1%} {r['ok_throughput'] / raw_token:>12.2f}"
          f" {r['daemon_cpu_us_per_request']:>18.0f} {r['daemon_cpu_cores']:>13.2f}")
cpu(paced, "paced")
cpu(paced16, "paced16")
cpu(quarter, "quarter")
cpu(batch, "batch")
for p, what in ((paced, "half"), (quarter, "a quarter of")):
    print(f"  fixed rate {p['target_rate']:.0f}/s ({what} the peak) on {p['connections']} connections: achieved "
          f"{p['ok_throughput']:.0f}/s, p50 {p['p50_us']:.0f} us, p99 {p['p99_us']:.0f} us, p99.9 {p['p999_us']:.0f} us; "
          f"daemon CPU {p['daemon_cpu_us_per_request']:.0f} us/request, {p['daemon_cpu_cores']:.2f} cores")
    print(f"    of which the client: sent late on a free connection by p50 {p['client_late_p50_us']:.0f} us, "
          f"p99 {p['client_late_p99_us']:.0f} us, p99.9 {p['client_late_p999_us']:.0f} us; "
          f"{p['behind_answer']} requests waited for their connection's previous answer; "
          f"from the real send: p50 {p['from_send_p50_us']:.0f} us, p99 {p['from_send_p99_us']:.0f} us, "
          f"p99.9 {p['from_send_p999_us']:.0f} us")
print(f"  diagnostic: half the peak on 16 connections for {paced16['seconds']:g} s (the earlier setup): "
      f"p50 {paced16['p50_us']:.0f} us, p99 {paced16['p99_us']:.0f} us, p99.9 {paced16['p999_us']:.0f} us; "
      f"{paced16['behind_answer']} requests waited for their connection's previous answer (not used for the targets)")
print(f"  diagnostic: {batch['connections']} connections with the client under SCHED_BATCH (its wake-ups do not "
      f"preempt keywardend): {batch['ok_throughput']:.0f}/s = {batch['ok_throughput'] / raw_token:.2f}x, "
      f"p99 {batch['p99_us']:.0f} us; daemon CPU {batch['daemon_cpu_us_per_request']:.0f} us/request, "
      f"{batch['daemon_cpu_cores']:.2f} cores (not used for the targets)")
p = paced
ratio = peak / raw_token
t1 = ratio >= 0.5
t2 = p["p99_us"] < 1000 and p["ok_throughput"] >= 0.95 * p["target_rate"]
print(f"  raw SoftHSM HMAC, same token (mean of before/after, best thread count and module locking): token-object key (pepper) "
      f"{raw_token:.0f}/s, session key {raw_session:.0f}/s")
print(f"  peak {peak:.0f} verifications/s at {peak_c} connections = {ratio:.2f}x the raw pepper HMAC rate "
      f"({peak / raw_session:.2f}x the session-key rate) -> target >= 0.5x {'MET' if t1 else 'MISSED'}")
print(f"  p99 at half the peak ({p['connections']} connections, {p['seconds']:g} s): {p['p99_us'] / 1000:.2f} ms -> target < 1 ms {'MET' if t2 else 'MISSED'}"
      f" (from the real send: {p['from_send_p99_us'] / 1000:.2f} ms)")
print(f"  audit events written during the load: {events} for {requests} requests "
      f"({events / max(1, requests):.2f} per verification)")
if out:
    json.dump({"keywardend_threads": int(threads), "levels": {str(c): load[c] for c in levels}, "paced": paced, "paced_quarter": quarter, "paced_16_connections": paced16,
               "closed_loop_client_sched_batch": batch,
               "raw_hmac": {f"{when}_{lk}": v for (when, lk), v in hmac.items()},
               "raw_hmac_token_object_ops_per_s": raw_token, "raw_hmac_session_key_ops_per_s": raw_session,
               "peak_ok_throughput": peak, "peak_connections": peak_c, "peak_over_raw_hmac": ratio,
               "target_half_raw_met": t1, "p99_at_half_peak_us": p["p99_us"], "target_p99_1ms_met": t2,
               "p99_at_half_peak_from_send_us": p["from_send_p99_us"],
               "audit_events": events, "requests": requests, "verify_path": vp},
              open(out, "w"), indent=2)
PY
