#!/usr/bin/env bash
# Crash test of the rotation engine (runs under tests/with-token.sh):
#
#   rotation_crash_test.sh ROTATION_RUNNER HSM_KEYTOOL
#
# 1. Every crash point. For every crash_point("...") step in
#    core/rotation/engine.cpp and every strategy that passes through it, a
#    rotation is killed there (KW_CRASH_AT=<step>, SIGKILL, exit 137). Then
#    `rotation_runner recover` must finish it (the windows are 0 s, so the
#    whole state machine fits in one run), `rotation_runner check` must find
#    every invariant intact, and the key must sign (hsm-keytool) with the new
#    version and still verify what the old version signed before the crash.
#    Keys of all four kinds take turns: hmac and ecdsa (wrapped), rsa and
#    ed25519 (token residency).
# 2. Crashes inside a time window (1 h): killed at a step after which the
#    rotation legitimately waits; recovery must leave it waiting, consistent.
# 3. Random kill points: `rotation_runner loop` (IMMEDIATE rotations of every
#    key, then run_due, forever) is SIGKILLed a random 20-300 ms after it has
#    logged in (a kill inside SoftHSM's C_Login can corrupt the SoftHSM token
#    file itself, which is not what this test is about),
#    KW_ROT_KILLS times (default 100); recover and check after each. A
#    token-residency rotation takes 250-400 ms in SoftHSM (a wrapped one
#    ~40 ms), so every other round loops over the wrapped keys only, or
#    nearly every kill would land inside the first C_GenerateKeyPair.
set -euo pipefail

runner=${1:?usage: rotation_crash_test.sh ROTATION_RUNNER HSM_KEYTOOL}
keytool=${2:?usage: rotation_crash_test.sh ROTATION_RUNNER HSM_KEYTOOL}
: "${KW_TEST_DIR:?run under tests/with-token.sh}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
engine_src="$here/../core/rotation/engine.cpp"
kills=${KW_ROT_KILLS:-100}
PY=/usr/bin/python3
work="$KW_TEST_DIR/rotcrash"
mkdir -p "$work"
cd "$work"
start=$SECONDS

fail() {
  echo "rotation_crash_test: FAIL: $*" >&2
  for f in out err; do
    if [ -s "$work/$f" ]; then echo "--- $f:" >&2; head -c 6000 "$work/$f" >&2; echo >&2; fi
  done
  exit 1
}

# The crash points, straight from the engine source, so a new one cannot be
# forgotten here.
[ -r "$engine_src" ] || fail "cannot read $engine_src"
mapfile -t steps < <(grep -o 'crash_point("[a-z_]*")' "$engine_src" | sed 's/crash_point("\(.*\)")/\1/' | awk '!seen[$0]++')
[ "${#steps[@]}" -ge 8 ] || fail "found only ${#steps[@]} crash points in $engine_src: ${steps[*]}"
echo "crash points in engine.cpp: ${steps[*]}"

# Which strategies pass through a step (with 0 s windows every one reaches
# retired and done within the rotate call).
strategies_for() {
  case "$1" in
    phasing) echo GRADUAL ;;
    planned | generated_unrecorded | generated | published | promoted | retired | done)
      echo IMMEDIATE OVERLAPPING GRADUAL BLUE_GREEN ;;
    *) fail "crash point '$1' is new: say in strategies_for which strategies reach it" ;;
  esac
}

# recover_and_check LABEL: recover, then check; fails on any broken invariant.
recover_and_check() {
  "$runner" recover >recover.json 2>err || { cp recover.json out; fail "$1: rotation_runner recover failed"; }
  "$runner" check >out 2>err || fail "$1: invariants broken after recovery"
}

# json_get FILE EXPR: evaluates a Python expression over j = json.load(FILE).
json_get() { $PY -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

"$runner" setup 2 >out 2>err || fail "rotation_runner setup failed"
"$runner" setup 1 w >out 2>err || fail "rotation_runner setup (window keys) failed"
keys=(k-hmac-1 k-ecdsa-1 k-rsa-1 k-ed-1 k-hmac-2 k-ecdsa-2 k-rsa-2 k-ed-2)
"$runner" check >out 2>err || fail "invariants broken right after setup"
printf 'rotation crash test message %s\n' "$RANDOM" >msg

# ---------------------------------------------------------------- 0. the checker can fail
# Each breakage is made in a copy of the store; `check` must refuse it.
db=${KEYWARDEN_STORE_URL#sqlite:}
db=${db#//}
checker_cases=0
broken() {  # broken DESCRIPTION EXPECTED_MESSAGE SQL
  local what=$1 want=$2 sql=$3 copy="$work/broken.db"
  rm -f "$copy" "$copy-wal" "$copy-shm"
  $PY - "$db" "$copy" "$sql" <<'PYEOF' || fail "checker self-test '$what': could not prepare the broken copy"
import sqlite3, sys
src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2])
src.backup(dst); src.close()
dst.executescript(sys.argv[3]); dst.commit(); dst.close()
PYEOF
  local status=0
  KEYWARDEN_STORE_URL="sqlite:$copy" "$runner" check >out 2>err || status=$?
  [ "$status" -eq 1 ] || fail "checker self-test '$what': check exited $status, expected 1"
  grep -q -- "$want" out || fail "checker self-test '$what': no '$want' in its report"
  checker_cases=$((checker_cases + 1))
  echo "ok: check refuses a store with $what"
}
first_wrapped="(SELECT kid FROM key_versions WHERE residency = 'wrapped' ORDER BY kid LIMIT 1)"
first_token="(SELECT kid FROM key_versions WHERE residency = 'token' ORDER BY kid LIMIT 1)"
broken "a wrapped version without its blob" "points at nothing" \
  "UPDATE key_versions SET wrapped_blob = NULL WHERE kid = $first_wrapped;"
broken "a token object without a version record" "belong to no live token-residency version" \
  "DELETE FROM key_versions WHERE kid = $first_token;"
broken "a destroyed version whose blob is still stored" "destroyed, but its wrapped blob" \
  "UPDATE key_versions SET state = 'destroyed', is_primary = 0 WHERE kid = $first_wrapped;"
broken "a key without a primary version" "0 primary versions" \
  "UPDATE key_versions SET is_primary = 0 WHERE kid = $first_wrapped;"
broken "a rotation left open with nothing to wait for" "waits for nothing" \
  "INSERT INTO rotations(key_id, key_name, strategy, from_kid, to_kid, state, started_at, params)
   SELECT key_id, (SELECT name FROM keys WHERE id = key_id), 'IMMEDIATE', kid, kid, 'generated', 0, '{}'
   FROM key_versions WHERE kid = $first_wrapped;"
broken "an edited audit event" "audit chain" \
  "UPDATE audit_events SET details = '{\"edited\":true}' WHERE seq = (SELECT MAX(seq) FROM audit_events);"

# ---------------------------------------------------------------- 1. every crash point
covered=0
declare -A covered_steps=()
next_key=0
for step in "${steps[@]}"; do
  for strategy in $(strategies_for "$step"); do
    key=${keys[$((next_key % ${#keys[@]}))]}
    next_key=$((next_key + 1))
    label="$step/$strategy/$key"
    "$keytool" sign "$key" --in msg --out sig.old >/dev/null 2>err || fail "$label: sign before the crash failed"
    status=0
    KW_CRASH_AT=$step "$runner" rotate "$key" "$strategy" 0 >out 2>err || status=$?
    [ "$status" -eq 137 ] || fail "$label: rotate exited $status, expected death by SIGKILL (137) at '$step'"

    recover_and_check "$label"
    # The interrupted rotation was resumed to the end (killed at "done", right
    # after the final save, it has nothing left to resume).
    outcome=$(json_get recover.json "([r['outcome'] for r in j['touched'] if r['key'] == '$key'] or ['untouched'])[-1]")
    if [ "$step" = done ]; then
      [ "$outcome" = untouched ] || fail "$label: recover touched a rotation that was already done ($outcome)"
    else
      [ "$outcome" = success ] || { cp recover.json out; fail "$label: recovery ended the rotation with '$outcome', expected success"; }
    fi
    "$keytool" rotate status "$key" --json >status.json 2>err || fail "$label: rotate status failed"
    state=$(json_get status.json "j['rotation']['state']")
    to_kid=$(json_get status.json "j['rotation']['to_kid']")
    [ "$state" = done ] || fail "$label: the rotation is '$state' after recovery, expected done"
    "$keytool" sign "$key" --in msg --out sig.new >/dev/null 2>err || fail "$label: the key does not sign after recovery"
    signer=$("$keytool" sign "$key" --in msg --json 2>err | $PY -c 'import json,sys; print(json.load(sys.stdin)["kid"])') \
      || fail "$label: sign --json failed"
    [ "$signer" = "$to_kid" ] || fail "$label: signed by $signer, expected the new version $to_kid"
    "$keytool" verify "$key" --in msg --signature sig.new >out 2>err || fail "$label: the new signature does not verify"
    "$keytool" verify "$key" --in msg --signature sig.old >out 2>err || fail "$label: the pre-crash signature no longer verifies"
    covered=$((covered + 1))
    covered_steps[$step]=$(( ${covered_steps[$step]:-0} + 1 ))
    echo "ok: killed at $label, recovered ($outcome), invariants hold, signs with $signer"
  done
done
for step in "${steps[@]}"; do
  [ -n "${covered_steps[$step]:-}" ] || fail "crash point '$step' was never exercised"
done

# ---------------------------------------------------------------- 2. crashes inside a time window
# KEY STRATEGY STEP EXPECTED_STATE_AFTER_RECOVERY SIGNER(old|new)
window_cases=(
  "w-hmac-1 OVERLAPPING published promoted new"
  "w-ecdsa-1 GRADUAL phasing phasing old"
  "w-rsa-1 BLUE_GREEN promoted promoted new"
  "w-ed-1 OVERLAPPING generated_unrecorded promoted new"
)
windows=0
for c in "${window_cases[@]}"; do
  read -r key strategy step want signer_is <<<"$c"
  label="window $step/$strategy/$key"
  old_kid=$("$keytool" sign "$key" --in msg --json 2>err | $PY -c 'import json,sys; print(json.load(sys.stdin)["kid"])') || fail "$label: sign failed"
  status=0
  KW_CRASH_AT=$step "$runner" rotate "$key" "$strategy" 3600 >out 2>err || status=$?
  [ "$status" -eq 137 ] || fail "$label: rotate exited $status, expected 137"
  recover_and_check "$label"
  "$keytool" rotate status "$key" --json >status.json 2>err || fail "$label: rotate status failed"
  state=$(json_get status.json "j['rotation']['state']")
  to_kid=$(json_get status.json "j['rotation']['to_kid']")
  [ "$state" = "$want" ] || fail "$label: rotation is '$state' after recovery, expected '$want' (waiting out its window)"
  signer=$("$keytool" sign "$key" --in msg --json 2>err | $PY -c 'import json,sys; print(json.load(sys.stdin)["kid"])') || fail "$label: no signing"
  if [ "$signer_is" = new ]; then expect=$to_kid; else expect=$old_kid; fi
  [ "$signer" = "$expect" ] || fail "$label: signed by $signer, expected the $signer_is version $expect"
  windows=$((windows + 1))
  echo "ok: killed at $label, recovered into '$state' (waiting), signs with the $signer_is version"
done

# ---------------------------------------------------------------- 3. random kill points
declare -A interrupted=()
rotations=0
empty=0
for ((i = 1; i <= kills; i++)); do
  if ((i % 2)); then globs='k-*'; else globs='k-hmac-*,k-ecdsa-*'; fi
  rm -f loop.out loop.err  # (else the wait below could see the last round's "ready")
  "$runner" loop "$globs" >loop.out 2>loop.err &
  pid=$!
  # Wait until it has logged in (see "ready" in rotation_runner.cpp: SoftHSM
  # rewrites token.object in place during C_Login), then kill it at a random
  # point of its rotation work.
  for ((t = 0; t < 2000; t++)); do
    grep -q '^ready' loop.out 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  if ! grep -q '^ready' loop.out; then
    kill -9 "$pid" 2>/dev/null || true
    status=0
    wait "$pid" || status=$?
    { cat loop.err; echo "(loop.out:)"; cat loop.out; } >err
    fail "random kill $i: the loop did not get ready (exit status $status)"
  fi
  sleep "$(printf '0.%03d' $((20 + RANDOM % 281)))"
  kill -9 "$pid" 2>/dev/null || true
  status=0
  wait "$pid" || status=$?
  if [ "$status" -ne 137 ]; then
    cp loop.err err
    fail "random kill $i: the loop exited on its own with status $status before it was killed"
  fi
  n=$(grep -c '^rotated ' loop.out || true)
  rotations=$((rotations + n))
  [ "$n" -gt 0 ] || empty=$((empty + 1))
  recover_and_check "random kill $i (after $n rotations)"
  while read -r st; do
    [ -n "$st" ] && interrupted[$st]=$(( ${interrupted[$st]:-0} + 1 ))
  done < <(json_get recover.json "'\n'.join(r['state'] for r in j['open_before'] if r['key'].startswith('k-'))")
  for key in k-hmac-1 k-rsa-2; do
    "$keytool" sign "$key" --in msg --out sig.rnd >/dev/null 2>err || fail "random kill $i: $key does not sign"
    "$keytool" verify "$key" --in msg --signature sig.rnd >out 2>err || fail "random kill $i: $key does not verify"
  done
done

"$keytool" audit verify >out 2>err || fail "hsm-keytool audit verify failed at the end"
"$runner" check >out 2>err || fail "final check failed"
final=$(cat out)
summary=""
for st in "${!interrupted[@]}"; do summary+="$st=${interrupted[$st]} "; done
echo "rotation crash test summary:"
echo "  checker self-test: $checker_cases kinds of broken store refused"
echo "  crash points: ${#steps[@]} (${steps[*]}); $covered step/strategy kills, all recovered to success"
for step in "${steps[@]}"; do echo "    $step: ${covered_steps[$step]} strateg$([ "${covered_steps[$step]}" -eq 1 ] && echo y || echo ies)"; done
echo "  window crashes: $windows recovered into a legitimate wait"
echo "  random kills: $kills (loop completed $rotations IMMEDIATE rotations in all; $empty kills before the first one)"
echo "  rotations found open at a random kill, by state: ${summary:-none}"
echo "  $final"
echo "  $((SECONDS - start)) s"
