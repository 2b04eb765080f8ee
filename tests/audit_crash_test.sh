#!/usr/bin/env bash
# Crash test of the audit log (runs under tests/with-token.sh):
#
#   audit_crash_test.sh AUDIT_APPENDER HSM_KEYTOOL
#
# Round after round, starts tests/audit_appender (which prints "durable <seq>"
# once each event's commit has returned), SIGKILLs it at a random moment, and
# then checks that
#   - every seq it reported durable is in the store,
#   - no seq was reported durable twice across rounds (a lost event would
#     have its seq handed out again by the next run),
#   - `hsm-keytool audit verify` still finds the chain intact (exit 0).
# Then, in KW_CRASH_SPOOL_ROUNDS more rounds (10), the appender spools its
# events as keywardend does (core/audit/spool.hpp) and prints "spooled ..."
# once each is in the spool; after the kill, `hsm-keytool audit verify`
# (which stores what a dead writer's spool holds, behind an audit_recovered
# marker) must pass, every spooled event must be in the store exactly once,
# and no spool file may be left.
# All rounds share one token and one store. KW_CRASH_ROUNDS overrides the
# number of rounds (50 by default), KW_CRASH_THREADS the appender's threads
# (4) and KW_CRASH_PAUSE_US its pause between a thread's events (1000 us).
# Unthrottled, 4 threads append ~11,000 events/s; since `audit verify` checks
# every MAC of the growing log (~30 us each) after every round, that would make
# 50 rounds take over 3 minutes. At 1 ms a round still writes hundreds of
# events with commits in flight when the kill lands.
set -euo pipefail

appender=${1:?usage: audit_crash_test.sh AUDIT_APPENDER HSM_KEYTOOL}
keytool=${2:?usage: audit_crash_test.sh AUDIT_APPENDER HSM_KEYTOOL}
: "${KW_TEST_DIR:?run under tests/with-token.sh}"
: "${KEYWARDEN_STORE_URL:?run under tests/with-token.sh}"
db=${KEYWARDEN_STORE_URL#sqlite:}
db=${db#//}
rounds=${KW_CRASH_ROUNDS:-50}
threads=${KW_CRASH_THREADS:-4}
pause_us=${KW_CRASH_PAUSE_US:-1000}
work="$KW_TEST_DIR/crash"
mkdir -p "$work"

fail() {
  echo "audit_crash_test: FAIL: $*" >&2
  exit 1
}

"$keytool" init >"$work/init.out" 2>&1 || { cat "$work/init.out" >&2; fail "hsm-keytool init failed"; }

# Checks one round's output against the store. Prints "<durable lines> <max
# durable seq> <events in store>"; fails if a durable seq is missing or was
# already reported durable in an earlier round.
check_round() {
  python3 - "$db" "$1" "$2" <<'PY'
import sqlite3, sys
db, out, prev_max = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(out, "rb").read().decode("ascii", "replace")
lines = text.split("\n")[:-1]  # the last piece is "" or a line cut short by the kill
seqs = []
for line in lines:
    word, _, num = line.partition(" ")
    if word != "durable" or not num.isdigit():
        sys.exit(f"unexpected appender output line: {line!r}")
    seqs.append(int(num))
con = sqlite3.connect(db, timeout=10)
have = {row[0] for row in con.execute("SELECT seq FROM audit_events")}
con.close()
missing = sorted(s for s in seqs if s not in have)
if missing:
    sys.exit(f"{len(missing)} events reported durable are missing from the store, first {missing[:10]}")
if len(set(seqs)) != len(seqs):
    sys.exit("a seq was reported durable twice in one run")
if seqs and min(seqs) <= prev_max:
    sys.exit(f"seq {min(seqs)} reported durable again (an earlier run already had up to {prev_max}): an event was lost")
print(len(seqs), max(seqs) if seqs else prev_max, len(have))
PY
}

start=$SECONDS
total=0
prev_max=0
empty_rounds=0
for ((round = 1; round <= rounds; round++)); do
  out="$work/round-$round.out"
  err="$work/round-$round.err"
  "$appender" "$threads" "$pause_us" >"$out" 2>"$err" &
  pid=$!
  # 0.050 .. 0.500 s
  sleep "$(printf '0.%03d' $((50 + RANDOM % 451)))"
  kill -9 "$pid" 2>/dev/null || true
  status=0
  wait "$pid" || status=$?
  if [ "$status" -ne 137 ]; then
    cat "$err" >&2
    fail "round $round: the appender exited on its own with status $status before it was killed"
  fi

  result=$(check_round "$out" "$prev_max") || fail "round $round: durable events check failed (see above)"
  read -r durable prev_max stored <<<"$result"
  total=$((total + durable))
  [ "$durable" -gt 0 ] || empty_rounds=$((empty_rounds + 1))

  if ! "$keytool" audit verify >"$work/verify-$round.out" 2>&1; then
    cat "$work/verify-$round.out" >&2
    fail "round $round: hsm-keytool audit verify failed after kill -9 (durable so far: $total)"
  fi
  echo "round $round: $durable durable events checked, $stored events in store"
done

# Spooled rounds: the events a killed writer had only in its spool are stored
# by the next opener of the log, each exactly once.
check_spool_round() {
  python3 - "$db" "$1" "$2" <<'PY'
import json, sqlite3, sys, collections
db, out, run = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(out, "rb").read().decode("ascii", "replace").split("\n")[:-1]
spooled = set()
for line in lines:
    w = line.split()
    if len(w) != 4 or w[0] != "spooled" or int(w[1]) != run:
        sys.exit(f"unexpected appender output line: {line!r}")
    spooled.add((int(w[2]), int(w[3])))
con = sqlite3.connect(db, timeout=10)
stored = collections.Counter()
for (details,) in con.execute("SELECT details FROM audit_events WHERE op = 'append'"):
    d = json.loads(details)
    if d.get("run") == run:
        stored[(d["thread"], d["i"])] += 1
markers = con.execute("SELECT count(*) FROM audit_events WHERE type = 'audit_recovered'").fetchone()[0]
con.close()
missing = sorted(spooled - set(stored))
if missing:
    sys.exit(f"{len(missing)} spooled events are missing from the store, first {missing[:10]}")
twice = [k for k, n in stored.items() if n > 1]
if twice:
    sys.exit(f"{len(twice)} events were stored more than once, first {twice[:10]}")
print(len(spooled), sum(stored.values()), markers)
PY
}
spool_rounds=${KW_CRASH_SPOOL_ROUNDS:-10}
spooled_total=0
for ((round = 1; round <= spool_rounds; round++)); do
  out="$work/spool-$round.out"
  err="$work/spool-$round.err"
  "$appender" "$threads" "$pause_us" spool "$round" >"$out" 2>"$err" &
  pid=$!
  sleep "$(printf '0.%03d' $((50 + RANDOM % 451)))"
  kill -9 "$pid" 2>/dev/null || true
  status=0
  wait "$pid" || status=$?
  [ "$status" -eq 137 ] || { cat "$err" >&2; fail "spool round $round: the appender exited with $status"; }
  if ! "$keytool" audit verify >"$work/spool-verify-$round.out" 2>&1; then
    cat "$work/spool-verify-$round.out" >&2
    fail "spool round $round: hsm-keytool audit verify failed after kill -9"
  fi
  result=$(check_spool_round "$out" "$round") || fail "spool round $round: spooled events check failed (see above)"
  read -r spooled stored markers <<<"$result"
  spooled_total=$((spooled_total + spooled))
  leftover=$(find "$(dirname "$db")" -maxdepth 1 -name "$(basename "$db")-audit-*.spool*" | wc -l)
  [ "$leftover" -eq 0 ] || fail "spool round $round: $leftover spool file(s) left after recovery"
  echo "spool round $round: $spooled spooled events, $stored stored once each, $markers recovery markers so far"
done
[ "$spooled_total" -gt 0 ] || fail "no spool round spooled an event"
[ "${markers:-0}" -gt 0 ] || fail "no spool round left events to recover (no audit_recovered marker)"

# The rounds must have exercised something.
[ "$total" -gt 0 ] || fail "no round produced a durable event"
[ "$empty_rounds" -lt "$rounds" ] || fail "every round was empty"
final=$("$keytool" audit verify --json) || { echo "$final" >&2; fail "final audit verify failed"; }
events=$(python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["ok"]; print(r["events"], r["checkpoints"])' <<<"$final") \
  || fail "final audit verify --json did not report ok: $final"
read -r stored_events checkpoints <<<"$events"
[ "$stored_events" -ge "$prev_max" ] || fail "store holds $stored_events events but seq $prev_max was reported durable"

echo "audit crash test: $rounds rounds of kill -9, $total durable events checked (highest seq $prev_max)," \
  "$stored_events events and $checkpoints checkpoints verified, $empty_rounds rounds killed before the first event," \
  "$spooled_total spooled events recovered from $spool_rounds kill -9 rounds, $((SECONDS - start)) s"
