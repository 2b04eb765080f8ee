# Shared set-up for the keywardend integration tests (sourced, not run):
# tests/server_test.sh, tests/server_http_test.sh, tests/alert_hooks_test.sh,
# tests/pkcs11_tool_test.sh.
#
#   D=/abs/keywardend K=/abs/hsm-keytool; source tests/server_setup.sh
#
# Runs under tests/with-token.sh (private SoftHSM token, $KW_TEST_DIR). Gives:
# a free loopback $PORT, $HOST, the unix socket path $SOCK, $PY; one line per
# check (ok, fail: stops at the first failure, printing ./out, ./err, ./hdr
# and the daemon log's tail); must, jcheck, jget; curl wrappers call, expect,
# expect_error (VIA=unix to use the socket); start_daemon, stop_daemon,
# wait_daemon. An EXIT trap kills a daemon still running.
[ -x "${D:?set D to keywardend}" ] || { echo "FAIL: $D is not executable" >&2; exit 1; }
[ -x "${K:?set K to hsm-keytool}" ] || { echo "FAIL: $K is not executable" >&2; exit 1; }
: "${KW_TEST_DIR:?run through tests/with-token.sh}"
cd "$KW_TEST_DIR"
PY=/usr/bin/python3
SOCK="$KW_TEST_DIR/kw.sock"
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HOST=127.0.0.1
checks=0
dpid=""
dlog=""
t_begin=$(date +%s)

fail() {
  echo "FAIL: $*" >&2
  for f in out err hdr; do
    if [ -s "$f" ]; then echo "--- $f:" >&2; head -c 3000 "$f" >&2; echo >&2; fi
  done
  if [ -n "$dlog" ] && [ -s "$dlog" ]; then echo "--- daemon log ($dlog, last lines):" >&2; tail -n 20 "$dlog" >&2; fi
  exit 1
}
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }

cleanup() {
  if [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null; then
    kill -KILL "$dpid" 2>/dev/null || true
    { wait "$dpid"; } 2>/dev/null || true
  fi
}
trap cleanup EXIT

# --- helpers ---------------------------------------------------------------------
# must DESCRIPTION CMD...: CMD must exit 0 (stdout in ./out, stderr in ./err).
must() {
  local what=$1
  shift
  "$@" >out 2>err || fail "$what: exit $? ($*)"
  ok "$what"
}
# jcheck DESCRIPTION PYTHON_EXPR: evaluates EXPR on j = the JSON in ./out.
jcheck() {
  local what=$1 expr=$2
  $PY -c "import json, sys
j = json.load(open('out'))
sys.exit(0 if ($expr) else 1)" 2>>err || fail "$what: JSON check failed: $expr"
  ok "$what"
}
# jget PYTHON_EXPR: prints EXPR evaluated on j = the JSON in ./out.
jget() { $PY -c "import json; j = json.load(open('out')); print($1)"; }

# call METHOD PATH [BODY [TOKEN]]: one request with curl over TCP (or over the
# unix socket when VIA=unix). Body in ./out, headers in ./hdr, status in $code.
VIA=tcp
call() {
  local method=$1 path=$2 body=${3-} tok=${4-}
  local args=(-sS -o out -D hdr -w '%{http_code}' -X "$method" --max-time 30)
  if [ "$VIA" = unix ]; then args+=(--unix-socket "$SOCK"); local base=http://localhost; else local base="http://$HOST:$PORT"; fi
  case "$tok" in
    "") ;;
    RAW:*) args+=(-H "Authorization: ${tok#RAW:}") ;;
    *) args+=(-H "Authorization: Bearer $tok") ;;
  esac
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  code=$(curl "${args[@]}" "$base$path" 2>err) || fail "curl $method $path: $(cat err)"
}
# expect STATUS DESCRIPTION METHOD PATH [BODY [TOKEN]]
expect() {
  local want=$1 what=$2
  shift 2
  call "$@"
  [ "$code" = "$want" ] || fail "$what: HTTP $code, want $want ($1 $2)"
}
# expect_error STATUS CODE DESCRIPTION METHOD PATH [BODY [TOKEN]]: an error answer.
expect_error() {
  local want=$1 ecode=$2 what=$3
  shift 3
  expect "$want" "$what" "$@"
  jcheck "$what -> $want $ecode" "j['error']['code'] == '$ecode' and len(j['error']['message']) > 0"
}

# start_daemon LOGFILE [EXTRA ARGS...]: starts keywardend on $HOST:$PORT and
# $SOCK and waits until /healthz answers; its pid is $dpid.
start_daemon() {
  dlog=$1
  shift
  "$D" --listen "$HOST:$PORT" --unix-socket "$SOCK" --threads 4 "$@" >"$dlog" 2>&1 &
  dpid=$!
  local i
  for i in $(seq 1 150); do
    if curl -sf -o /dev/null --max-time 1 "http://$HOST:$PORT/healthz"; then return 0; fi
    kill -0 "$dpid" 2>/dev/null || { wait "$dpid" || true; fail "keywardend exited during start-up"; }
    sleep 0.1
  done
  fail "keywardend did not answer /healthz within 15 s"
}
# stop_daemon: SIGTERM, wait (bounded), sets $drc to the exit status.
stop_daemon() {
  kill -TERM "$dpid"
  wait_daemon 20
}
wait_daemon() {  # wait_daemon SECONDS: waits for $dpid to exit, sets $drc
  local i
  for i in $(seq 1 $(($1 * 10))); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$dpid" 2>/dev/null && fail "keywardend still running $1 s after the signal"
  drc=0
  { wait "$dpid"; } 2>/dev/null || drc=$?
  dpid=""
}
