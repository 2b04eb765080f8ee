#!/usr/bin/env bash
# Per-policy alert hooks, end to end (runs under tests/with-token.sh):
#
#   alert_hooks_test.sh /abs/keywardend /abs/hsm-keytool
#
# A local webhook receiver (tests/webhook_receiver.py) records every POST by
# path: /global is the [alerts] webhook, /hook-a and /hook-b are the
# alert_hooks of policies team-a and team-b. keywardend's scheduler runs every
# second. A team-a key is made to fail its rotation for real: the policy's
# jwks_lead holds the rotation in "published", and the key is marked compromised
# meanwhile, so the new version cannot be promoted.
#
# 1. No kinds filter: rotation_failed for the team-a key reaches /hook-a and
#    /global, never /hook-b; key_expiring for a team-b key reaches /hook-b and
#    /global (once, though team-b lists /global as a hook too), never
#    /hook-a; a key no policy governs reaches /global only.
# 2. kinds = ["key_expiring"]: a second rotation failure reaches no one,
#    while key_expiring alerts (sent again after the restart) still arrive.
# 3. credits_low, credits_exhausted and verify_failed_spike; a webhook that
#    fails twice gets its alerts retried; a webhook that never answers
#    delays no request and no other webhook, and not shutdown beyond 2 s.
# 4. On a full disk (a small tmpfs, when mount works) audited requests are
#    refused, one audit_failure alert stands for many, and the daemon serves
#    again once there is room.
# 5. HTTPS webhooks: delivered when the certificate chains to [alerts] ca_file
#    and names the host; refused (and retried) otherwise; a bad ca_file stops
#    the start.
set -euo pipefail

D=${1:?usage: alert_hooks_test.sh /path/to/keywardend /path/to/hsm-keytool}
K=${2:?usage: alert_hooks_test.sh /path/to/keywardend /path/to/hsm-keytool}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=server_setup.sh
source "$here/server_setup.sh"

LOG="$KW_TEST_DIR/deliveries.jsonl"
: > "$LOG"
"$PY" "$here/webhook_receiver.py" "$KW_TEST_DIR/receiver.port" "$LOG" &
rpid=$!
trap 'kill "$rpid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 50); do [ -s receiver.port ] && break; sleep 0.1; done
[ -s receiver.port ] || fail "the webhook receiver did not start"
R="http://127.0.0.1:$(cat receiver.port)"
ok "webhook receiver listening on $R"

# deliveries PYTHON_EXPR: exit 0 when EXPR holds over the deliveries so far:
# d = the recorded POSTs, n(path, kind, key) = how many went to path with
# that kind and key.
deliveries() {
  "$PY" - "$LOG" "$1" <<'PYEOF'
import json, sys
d = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def n(path, kind, key):
    return sum(1 for x in d if x["path"] == path and x["body"].get("kind") == kind and x["body"].get("key") == key)
sys.exit(0 if eval(sys.argv[2]) else 1)
PYEOF
}
# dcheck DESCRIPTION PYTHON_EXPR: one check over the deliveries.
dcheck() {
  deliveries "$2" 2>>err || fail "$1: $2 (deliveries: $(cat "$LOG"))"
  ok "$1"
}
# wait_for SECONDS DESCRIPTION PYTHON_EXPR: polls until EXPR holds.
wait_for() {
  local i
  for i in $(seq 1 $(($1 * 5))); do
    if deliveries "$3" 2>/dev/null; then ok "$2"; return 0; fi
    sleep 0.2
  done
  fail "$2: not within $1 s: $3 (deliveries: $(cat "$LOG"))"
}
# fail_rotation KEY: creates a team-a key, waits for the scheduler to start its
# rotation and hold it in "published" (jwks_lead), marks the key compromised, and
# waits for the scheduler to record the rotation as failed.
fail_rotation() {
  local key=$1 i state=""
  expect 201 "create $key" POST /v1/admin/keys "{\"name\": \"$key\", \"type\": \"hmac\", \"labels\": {\"team\": \"a\"}}" "$ADMIN"
  for i in $(seq 1 100); do
    expect 200 "rotation of $key" GET "/v1/admin/keys/$key/rotation" "" "$ADMIN"
    state=$(jget '(j["rotation"] or {}).get("state", "")')
    [ "$state" = published ] && break
    sleep 0.2
  done
  [ "$state" = published ] || fail "the scheduler did not start rotating $key within 20 s (state '$state')"
  ok "the scheduler started rotating $key under team-a and holds it in published (jwks_lead)"
  expect 200 "compromise $key" POST "/v1/admin/keys/$key/compromise" '{"reason": "alert hook test"}' "$ADMIN"
  for i in $(seq 1 100); do
    expect 200 "rotation of $key" GET "/v1/admin/keys/$key/rotation" "" "$ADMIN"
    [ "$(jget 'j["rotation"]["outcome"]')" = failed ] && break
    sleep 0.2
  done
  jcheck "the rotation of $key failed (the new version could not be promoted)" \
    'j["rotation"]["outcome"] == "failed" and j["rotation"]["strategy"] == "OVERLAPPING"'
}

# stop_within_grace WHAT: SIGTERM must end keywardend cleanly within the 2 s
# alert shutdown grace (4.5 s allowed for a loaded machine), WHAT pending.
stop_within_grace() {
  local t0 stop_ms
  t0=$(date +%s%N)
  stop_daemon
  [ "$drc" = 0 ] || fail "keywardend exited $drc after SIGTERM"
  stop_ms=$((($(date +%s%N) - t0) / 1000000))
  [ "$stop_ms" -lt 4500 ] || fail "SIGTERM took $stop_ms ms with $1 (grace 2 s)"
  ok "SIGTERM with $1: stopped in $stop_ms ms"
}

# start_alerting DAEMON_LOG [KINDS]: keywardend with [alerts] webhooks =
# [/global], kinds = KINDS (a TOML array) when given, and a 1 s scheduler.
start_alerting() {
  local conf="$KW_TEST_DIR/alerts-$1.toml"
  {
    printf '[alerts]\nwebhooks = ["%s/global"]\n' "$R"
    [ -n "${2-}" ] && printf 'kinds = %s\n' "$2"
    printf '\n[rotation]\ncheck_interval = 1\n'
  } > "$conf"
  start_daemon "$1" --config "$conf"
  ok "keywardend started: webhooks = [/global], kinds = ${2:-all}"
}

must "init" "$K" init
must "issue the admin token" "$K" token issue --name admin --scope admin --out admin.tok
ADMIN=$(cat admin.tok)
cat > policies.toml <<EOF2
[[policy]]
name = "team-a"
priority = 10
strategy = "OVERLAPPING"
cryptoperiod = "3s"
jwks_lead = "3s"
alert_hooks = ["$R/hook-a"]

[policy.match]
labels = { team = "a" }

[[policy]]
name = "team-b"
priority = 10
strategy = "OVERLAPPING"
cryptoperiod = "30d"
alert_hooks = ["$R/hook-b", "$R/global"]

[policy.match]
labels = { team = "b" }
EOF2
must "policy apply (team-a: 3 s cryptoperiod, hook-a; team-b: hook-b)" "$K" policy apply policies.toml
must "generate b-exp (team-b, expires in 1 h)" "$K" generate --type hmac --name b-exp --label team=b --expires-in 1h
must "generate loose-exp (no policy, expires in 1 h)" "$K" generate --type hmac --name loose-exp --expires-in 1h

# ==================================================================================
# 1. Every kind
# ==================================================================================
start_alerting daemon-1.log
fail_rotation a-rot
wait_for 10 "rotation_failed for a-rot reached /hook-a and /global" \
  'n("/hook-a", "rotation_failed", "a-rot") >= 1 and n("/global", "rotation_failed", "a-rot") >= 1'
wait_for 10 "key_expiring for b-exp reached /hook-b and /global; loose-exp reached /global" \
  'n("/hook-b", "key_expiring", "b-exp") >= 1 and n("/global", "key_expiring", "b-exp") >= 1 and n("/global", "key_expiring", "loose-exp") >= 1'
sleep 1.5  # anything misrouted or duplicated would have arrived by now
dcheck "rotation_failed for a-rot: once to /hook-a, once to /global, never to /hook-b" \
  'n("/hook-a", "rotation_failed", "a-rot") == 1 and n("/global", "rotation_failed", "a-rot") == 1 and n("/hook-b", "rotation_failed", "a-rot") == 0'
dcheck "the rotation_failed alert names the policy, the strategy and the versions" \
  'all(x["body"]["details"]["policy"] == "team-a" and x["body"]["details"]["strategy"] == "OVERLAPPING" and x["body"]["details"]["from"] and x["body"]["details"]["to"] for x in d if x["body"]["kind"] == "rotation_failed")'
dcheck "key_expiring for b-exp: once to /hook-b, once to /global (listed twice, sent once), never to /hook-a" \
  'n("/hook-b", "key_expiring", "b-exp") == 1 and n("/global", "key_expiring", "b-exp") == 1 and n("/hook-a", "key_expiring", "b-exp") == 0'
dcheck "key_expiring for loose-exp (no policy): /global only" \
  'n("/global", "key_expiring", "loose-exp") == 1 and n("/hook-a", "key_expiring", "loose-exp") == 0 and n("/hook-b", "key_expiring", "loose-exp") == 0'
dcheck "/hook-a heard only about team-a keys, /hook-b only about team-b keys" \
  'all(x["body"]["key"].startswith("a-") for x in d if x["path"] == "/hook-a") and all(x["body"]["key"].startswith("b-") for x in d if x["path"] == "/hook-b")'
expect 200 "metrics" GET /metrics
grep -q '^keywarden_alerts_total{kind="rotation_failed",outcome="delivered"} 2$' out \
  || fail "keywarden_alerts_total{kind=rotation_failed,outcome=delivered} is not 2: $(grep alerts_total out)"
ok "metrics count 2 rotation_failed deliveries (hook-a and global)"
# a-rot waited in "published" for several 1 s scheduler ticks: it is still
# one rotation, started once and failed once.
rot_lines=$(grep '^keywarden_rotations_total' out | sort | tr '\n' ' ')
[ "$rot_lines" = 'keywarden_rotations_total{outcome="failed"} 1 keywarden_rotations_total{outcome="started"} 1 ' ] ||
  fail "keywarden_rotations_total should count one started and one failed rotation, not scheduler ticks: $rot_lines"
ok "keywarden_rotations_total counts rotations, not ticks: started 1, failed 1"
next_s=$(awk '/^keywarden_next_rotation_seconds / {print $2}' out)
[ -n "$next_s" ] || fail "no keywarden_next_rotation_seconds with team-a keys on a 3 s cryptoperiod"
ok "keywarden_next_rotation_seconds is exported ($next_s)"
stop_daemon
[ "$drc" = 0 ] || fail "keywardend exited $drc after SIGTERM"

# ==================================================================================
# 2. kinds = ["key_expiring"]: the filter applies to policy hooks too
# ==================================================================================
: > "$LOG"
start_alerting daemon-2.log '["key_expiring"]'
fail_rotation a-rot2
wait_for 10 "key_expiring alerts still reach /hook-b and /global after the restart" \
  'n("/hook-b", "key_expiring", "b-exp") == 1 and n("/global", "key_expiring", "b-exp") == 1'
sleep 2
dcheck "no rotation_failed anywhere, not even to team-a's hook" \
  'not any(x["body"]["kind"] == "rotation_failed" for x in d)'
expect 200 "metrics" GET /metrics
grep -q 'keywarden_rotations_total{outcome="failed"} 1' out || fail "the second rotation did not fail as arranged: $(grep rotations_total out)"
ok "the filtered rotation did fail (keywarden_rotations_total{outcome=\"failed\"} 1)"
stop_daemon
[ "$drc" = 0 ] || fail "keywardend exited $drc after SIGTERM"
# ==================================================================================
# 3. Token alerts, a flaky webhook and one that never answers
# ==================================================================================
# /flaky answers 503 twice, then 204: those alerts are retried with backoff
# and delivered. The "hole" accepts connections and never answers: each
# attempt waits out the 5 s timeout, and must delay neither the requests
# that raised the alerts nor the other webhooks, nor hold up a SIGTERM for
# longer than the 2 s shutdown grace.
: > "$LOG"
"$PY" -c 'import os, socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1])); os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(3600)' "$KW_TEST_DIR/hole.port" &
hpid=$!
trap 'kill "$rpid" "$hpid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 50); do [ -s hole.port ] && break; sleep 0.1; done
[ -s hole.port ] || fail "the black-hole webhook did not start"
printf '[alerts]\nwebhooks = ["%s/global", "%s/flaky", "http://127.0.0.1:%s/hole"]\nverify_failed_per_minute = 3\n' \
  "$R" "$R" "$(cat hole.port)" > alerts-3.toml
start_daemon daemon-3.log --config alerts-3.toml
ok "keywardend started: webhooks = [/global, /flaky, a black hole], verify_failed_per_minute = 3"
expect 201 "issue credits5" POST /v1/admin/tokens '{"name": "credits5", "max_uses": 5}' "$ADMIN"
C5=$(jget 'j["token"]')
slowest=0
timed_verify() {  # timed_verify TOKEN: POST /v1/tokens/verify; keeps the slowest answer (ms) in $slowest
  local t
  t=$(curl -sS -o out -w '%{time_total}' -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"token\": \"$1\"}" "http://$HOST:$PORT/v1/tokens/verify")
  t=$(awk -v t="$t" 'BEGIN {printf "%d", t * 1000}')
  if [ "$t" -gt "$slowest" ]; then slowest=$t; fi
}
for _ in 1 2 3 4; do timed_verify "$C5"; done
jcheck "credits5: the 4th use leaves 1 of 5 (20%)" 'j["credits"]["remaining"] == 1'
timed_verify "$C5"
jcheck "credits5: the 5th use leaves none" 'j["credits"]["remaining"] == 0'
for _ in 1 2 3 4; do timed_verify "$("$PY" "$here/server_client.py" token-unknown kw_live)"; done
jcheck "an unknown token -> NOT_FOUND" 'j["code"] == "NOT_FOUND"'
wait_for 5 "credits_low, credits_exhausted and verify_failed_spike (4 failures > 3 a minute) reached /global" \
  'n("/global", "credits_low", "credits5") == 1 and n("/global", "credits_exhausted", "credits5") == 1 and n("/global", "verify_failed_spike", "") == 1'
dcheck "credits_low says what is left of what; the spike says which trigger fired" \
  '[(x["body"]["details"]["remaining"], x["body"]["details"]["allowance"]) for x in d if x["path"] == "/global" and x["body"]["kind"] == "credits_low"] == [(1, 5)] and [x["body"]["details"]["trigger"] for x in d if x["path"] == "/global" and x["body"]["kind"] == "verify_failed_spike"] == ["count"]'
[ "$slowest" -lt 1000 ] || fail "a verification took $slowest ms while a webhook hung: alert delivery blocked a request"
ok "no verification waited on the webhooks (slowest $slowest ms, one webhook never answering)"
wait_for 10 "/flaky: refused twice, then all 3 alerts delivered (retried with backoff)" \
  'sum(1 for x in d if x["path"] == "/flaky" and x["status"] == 503) == 2 and sum(1 for x in d if x["path"] == "/flaky" and x["status"] == 204) == 3'
expect 200 "metrics" GET /metrics
retried=$(awk '/^keywarden_alerts_total\{.*outcome="retried"\}/ {n += $2} END {print n + 0}' out)
[ "$retried" -ge 2 ] || fail "keywarden_alerts_total{outcome=retried} adds up to $retried, want >= 2: $(grep alerts_total out)"
ok "metrics count the retries ($retried)"
stop_within_grace "alerts stuck on a webhook that never answers"
# ==================================================================================
# 4. A full disk: fail closed, one audit_failure alert for many refusals, recovery
# ==================================================================================
# The store is copied onto a 16 MiB tmpfs, which is then filled. Every
# verification must be refused (its audit event cannot be written), the
# alert must come once for all of them, and once there is room again the
# daemon must serve and the log must verify. Needs mount(8) (root).
if mkdir -p full && mount -t tmpfs -o size=16m tmpfs full 2>/dev/null; then
  # The daemon goes first: a mount it still holds files on cannot be unmounted.
  trap 'kill "$rpid" "$hpid" 2>/dev/null || true; cleanup; umount "$KW_TEST_DIR/full" 2>/dev/null || true' EXIT
  for f in keywarden.db keywarden.db-wal keywarden.db-shm; do [ -e "$f" ] && cp -p "$f" full/; done
  saved_store=$KEYWARDEN_STORE_URL
  export KEYWARDEN_STORE_URL="sqlite:$KW_TEST_DIR/full/keywarden.db"
  : > "$LOG"
  printf '[alerts]\nwebhooks = ["%s/global"]\n' "$R" > alerts-4.toml
  start_daemon daemon-4.log --config alerts-4.toml
  expect 201 "issue full-disk token" POST /v1/admin/tokens '{"name": "disk"}' "$ADMIN"
  DISK=$(jget 'j["token"]')
  expect 200 "verify before the disk fills" POST /v1/tokens/verify "{\"token\": \"$DISK\"}"
  # fill: takes whatever room there is (until ENOSPC). The daemon frees some
  # now and then (the store's WAL is truncated, spools are deleted), so the
  # disk is filled again before each request that must be refused.
  fills=0
  fill() {
    fills=$((fills + 1))
    dd if=/dev/zero of="full/filler-$fills" bs=4k 2>/dev/null || true
  }
  fill
  [ "$(df --output=avail -B1 full | tail -1)" -lt 65536 ] || fail "the tmpfs did not fill up"
  # The daemon frees and takes room in the background (the store's WAL,
  # spool pages), so a full disk is not perfectly still: some requests may
  # still find room. What must hold: refusals are AUDIT_UNAVAILABLE, every
  # other answer is VALID, and every VALID answer is in the audit log later.
  valid=1 refused=0
  for _ in $(seq 1 30); do
    fill
    call POST /v1/tokens/verify "{\"token\": \"$DISK\"}"
    case "$code" in
      200) grep -q '"code":"VALID"' out || fail "full disk: a 200 answer that is not VALID: $(cat out)"; valid=$((valid + 1)) ;;
      503) grep -q '"AUDIT_UNAVAILABLE"' out || fail "full disk: a 503 that is not AUDIT_UNAVAILABLE: $(cat out)"; refused=$((refused + 1)) ;;
      *) fail "full disk: HTTP $code: $(cat out)" ;;
    esac
  done
  [ "$refused" -ge 3 ] || fail "on a full disk only $refused of 30 verifications were refused"
  ok "on a full disk verification fails closed: $refused of 30 refused with AUDIT_UNAVAILABLE, the rest VALID"
  # Right after a refusal, /readyz says the audit log cannot be written.
  for _ in $(seq 1 20); do
    fill
    call POST /v1/tokens/verify "{\"token\": \"$DISK\"}"
    [ "$code" = 503 ] && break
    valid=$((valid + 1))
  done
  [ "$code" = 503 ] || fail "full disk: no verification refused in 20 more tries"
  refused=$((refused + 1))
  expect 503 "readyz on a full disk" GET /readyz
  jcheck "GET /readyz on a full disk -> 503 with the audit check failing" \
    'j["ready"] is False and j["checks"]["audit"] != "ok"'
  ok "the audit check says: $(jget 'j["checks"]["audit"]')"
  expect 200 "metrics" GET /metrics
  grep -q "^keywarden_audit_failures_total $refused\$" out || fail "keywarden_audit_failures_total is not $refused: $(grep audit_failures out)"
  ok "metrics count every refusal ($refused)"
  wait_for 5 "audit_failure reached /global" 'n("/global", "audit_failure", "") >= 1'
  sleep 1
  dcheck "one audit_failure alert for the $refused refusals (at most one a minute)" \
    '[x["body"]["details"]["refused"] for x in d if x["body"]["kind"] == "audit_failure"] == [1]'
  rm -f full/filler-*
  for _ in $(seq 1 50); do
    call POST /v1/tokens/verify "{\"token\": \"$DISK\"}"
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  jcheck "with room again, verification works (no restart)" 'j["code"] == "VALID"'
  expect 200 "readyz after the disk has room" GET /readyz
  valid=$((valid + 1))
  stop_daemon
  [ "$drc" = 0 ] || fail "keywardend exited $drc after SIGTERM"
  must "audit verify of the store that ran out of room" "$K" audit verify
  "$K" audit query --key disk --event key_used --json >out 2>err || fail "audit query --key disk"
  logged=$(grep -c '"outcome":"VALID"' out || true)
  [ "$logged" = "$valid" ] || fail "$valid VALID answers but $logged VALID events for 'disk' in the log"
  ok "every VALID answer given around the full disk is in the audit log ($logged)"
  export KEYWARDEN_STORE_URL=$saved_store
  umount full
else
  ok "# skip the full-disk section (no tmpfs mount here: not root)"
fi
# ==================================================================================
# 5. HTTPS webhooks: the certificate must chain to [alerts] ca_file and name the host
# ==================================================================================
# A test CA signs a certificate for "localhost" and one for another name. The
# receiver with the right certificate gets the alert; the one whose certificate
# names another host is refused on every attempt (retried, never delivered);
# without ca_file the system store does not know the test CA, so nothing is
# delivered either. A ca_file that is not PEM stops the start with a message.
tls_cert() {  # tls_cert NAME DNS: NAME.key and NAME.pem for DNS, signed by the test CA
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" \
    -subj "/CN=$2" 2>/dev/null
  printf 'subjectAltName = DNS:%s\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" \
    -out "$1.pem" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj "/CN=keywarden alert test CA" 2>/dev/null || fail "openssl could not make the test CA"
tls_cert right localhost
tls_cert wrong other.invalid
: > "$LOG"
"$PY" "$here/webhook_receiver.py" "$KW_TEST_DIR/tls-right.port" "$LOG" right.pem right.key &
tpid1=$!
"$PY" "$here/webhook_receiver.py" "$KW_TEST_DIR/tls-wrong.port" "$LOG" wrong.pem wrong.key &
tpid2=$!
trap 'kill "$rpid" "$hpid" "$tpid1" "$tpid2" 2>/dev/null || true; cleanup; umount "$KW_TEST_DIR/full" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do [ -s tls-right.port ] && [ -s tls-wrong.port ] && break; sleep 0.1; done
[ -s tls-right.port ] && [ -s tls-wrong.port ] || fail "the HTTPS webhook receivers did not start"
ok "HTTPS receivers: one with a certificate for localhost, one for other.invalid (same test CA)"
https_hooks="\"https://localhost:$(cat tls-right.port)/tls-right\", \"https://localhost:$(cat tls-wrong.port)/tls-wrong\""
# spike N: N unknown tokens, one over verify_failed_per_minute = N - 1
spike() {
  local i
  for i in $(seq 1 "$1"); do
    expect 200 "verify an unknown token" POST /v1/tokens/verify \
      "{\"token\": \"$("$PY" "$here/server_client.py" token-unknown kw_live)\"}"
  done
}
alerts_metric() {  # alerts_metric OUTCOME: keywarden_alerts_total for verify_failed_spike with OUTCOME
  expect 200 "metrics" GET /metrics
  awk -v o="outcome=\"$1\"" '/^keywarden_alerts_total\{/ && /kind="verify_failed_spike"/ && index($0, o) {n += $2} END {print n + 0}' out
}
printf '[alerts]\nwebhooks = [%s]\nca_file = "%s/ca.pem"\nverify_failed_per_minute = 1\n' \
  "$https_hooks" "$KW_TEST_DIR" > alerts-5.toml
start_daemon daemon-5.log --config alerts-5.toml
spike 2
wait_for 5 "HTTPS: the spike reached the receiver whose certificate chains to ca_file and names localhost" \
  'n("/tls-right", "verify_failed_spike", "") == 1'
for _ in $(seq 1 50); do [ "$(alerts_metric retried)" -ge 1 ] && break; sleep 0.1; done
[ "$(alerts_metric retried)" -ge 1 ] || fail "the webhook with a certificate for other.invalid was not retried: $(grep alerts_total out)"
dcheck "HTTPS: nothing reached the receiver whose certificate names another host (refused, retried)" \
  'sum(1 for x in d if x["path"] == "/tls-wrong") == 0'
stop_daemon
[ "$drc" = 0 ] || fail "keywardend exited $drc after SIGTERM"
: > "$LOG"
printf '[alerts]\nwebhooks = [%s]\nverify_failed_per_minute = 1\n' "$https_hooks" > alerts-5b.toml
start_daemon daemon-5b.log --config alerts-5b.toml
spike 2
for _ in $(seq 1 50); do [ "$(alerts_metric retried)" -ge 2 ] && break; sleep 0.1; done
[ "$(alerts_metric retried)" -ge 2 ] || fail "without ca_file both HTTPS webhooks should have been refused and retried: $(grep alerts_total out)"
dcheck "HTTPS without ca_file: the system store does not trust the test CA, nothing delivered" 'len(d) == 0'
stop_daemon
[ "$drc" = 0 ] || fail "keywardend exited $drc after SIGTERM"
printf '[alerts]\nwebhooks = [%s]\nca_file = "%s/right.key"\n' "$https_hooks" "$KW_TEST_DIR" > alerts-5c.toml
rc=0
timeout 30 "$D" --listen "$HOST:$PORT" --config alerts-5c.toml >daemon-5c.log 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "keywardend started (or hung: rc $rc) with a ca_file that holds no certificate"
grep -q "alerts.ca_file '$KW_TEST_DIR/right.key': cannot load CA certificates" daemon-5c.log ||
  fail "no clear message for a bad ca_file: $(cat daemon-5c.log)"
ok "a ca_file that holds no certificate stops the start: $(grep -o "alerts.ca_file.*" daemon-5c.log | head -1)"
# ==================================================================================
# 6. A webhook whose host name never resolves does not hold up shutdown
# ==================================================================================
# The daemon runs in a mount namespace of its own whose /etc/resolv.conf names
# a DNS server that takes queries and never answers (the C library then waits
# 20 s). SIGTERM must still take no more than the 2 s shutdown grace. Needs
# root (unshare, mount, port 53); skipped otherwise.
printf 'nameserver 127.0.0.77\n' >resolv.silent
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
  unshare -m --propagation private sh -c "mount --bind '$KW_TEST_DIR/resolv.silent' /etc/resolv.conf" 2>/dev/null; then
  "$PY" -c 'import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.77", 53))
open(sys.argv[1], "w").write("bound"); time.sleep(3600)' "$KW_TEST_DIR/dns.bound" &
  dnspid=$!
  trap 'kill "$rpid" "$hpid" "$tpid1" "$tpid2" "$dnspid" 2>/dev/null || true; cleanup; umount "$KW_TEST_DIR/full" 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do [ -s dns.bound ] && break; sleep 0.1; done
  [ -s dns.bound ] || fail "the silent DNS server did not start"
  cat >dns-jail.sh <<EOF
#!/bin/sh
# keywardend with /etc/resolv.conf naming the silent DNS server
exec unshare -m --propagation private sh -c 'mount --bind "$KW_TEST_DIR/resolv.silent" /etc/resolv.conf && exec "\$0" "\$@"' "$D" "\$@"
EOF
  chmod +x dns-jail.sh
  printf '[alerts]\nwebhooks = ["http://webhook.keywarden-test.invalid:8080/hook"]\nverify_failed_per_minute = 1\n' >alerts-6.toml
  D_REAL=$D
  D="$KW_TEST_DIR/dns-jail.sh"
  start_daemon daemon-6.log --config alerts-6.toml
  D=$D_REAL
  ok "keywardend started with a webhook whose name lookup never ends"
  spike 2
  sleep 1  # the alert worker is now waiting on the lookup
  stop_within_grace "an alert waiting on a DNS server that never answers"
else
  ok "# skip the silent-DNS section (needs root, unshare and mount)"
fi
must "audit verify" "$K" audit verify
echo "all $checks alert_hooks checks passed in $(($(date +%s) - t_begin)) s"
