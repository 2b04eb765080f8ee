#!/usr/bin/env bash
# Starts the real keywardend and runs the C++ client test against it
# (tests/server_http_*_test.cpp, built as server_http_test):
#
#   tests/with-token.sh bash tests/server_http_test.sh /abs/keywardend /abs/hsm-keytool /abs/server_http_test
#
# Set-up as in server_test.sh (tests/server_setup.sh): a private SoftHSM
# token, `hsm-keytool init`, an admin token issued to a 0600 file, the daemon
# on a free loopback port and a unix socket. The C++ test creates its own keys
# and tokens through the admin API. It learns where the daemon is from
# KW_HTTP_HOST, KW_HTTP_PORT, KW_HTTP_SOCKET and KW_ADMIN_TOKEN_FILE (the token
# stays in a file: never on argv, never in a log). Afterwards the daemon must
# still be alive, stop cleanly on SIGTERM, and the audit log must verify,
# online and as an offline export.
set -euo pipefail

D=${1:?usage: server_http_test.sh KEYWARDEND HSM_KEYTOOL SERVER_HTTP_TEST}
K=${2:?usage: server_http_test.sh KEYWARDEND HSM_KEYTOOL SERVER_HTTP_TEST}
T=${3:?usage: server_http_test.sh KEYWARDEND HSM_KEYTOOL SERVER_HTTP_TEST}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=server_setup.sh
source "$here/server_setup.sh"

must "init" "$K" init
must "issue the admin token" "$K" token issue --name admin --scope admin --out admin.tok
start_daemon daemon.log
ok "keywardend answers on $HOST:$PORT and $SOCK"

KW_HTTP_HOST=$HOST KW_HTTP_PORT=$PORT KW_HTTP_SOCKET=$SOCK KW_ADMIN_TOKEN_FILE="$KW_TEST_DIR/admin.tok" \
  KW_REQUEST_TIMEOUT_S=10 "$T" ${KW_DOCTEST_ARGS:-} || fail "the C++ client test failed (doctest output above)"
ok "C++ client test passed"

kill -0 "$dpid" 2>/dev/null || fail "keywardend died during the C++ client test"

# The log exported through the admin API verifies offline, with the public
# key its header carries; an edited copy does not.
curl -sS -f -D hdr -o api-audit.jsonl -H "Authorization: Bearer $(cat admin.tok)" \
  "http://$HOST:$PORT/v1/admin/audit/export" 2>err || fail "GET /v1/admin/audit/export: $(cat err)"
grep -qi '^content-type: application/x-ndjson' hdr || fail "the export is not served as application/x-ndjson"
"$PY" - <<'EOF' || fail "the API export is not a keywarden-audit-export-v1 document"
import json, re
lines = [json.loads(l) for l in open("api-audit.jsonl")]
head = lines[0]
assert head["record"] == "header" and head["format"] == "keywarden-audit-export-v1", head
open("api-audit.pem", "w").write(head["public_key"])
events = [l for l in lines if l["record"] == "event"]
claimed = int(re.search(r"(?im)^x-keywarden-audit-events: *(\d+)", open("hdr").read()).group(1))
assert len(events) == claimed > 100, (len(events), claimed)
assert lines[-1]["record"] == "checkpoint", "the export does not end on a checkpoint"
EOF
ok "GET /v1/admin/audit/export: a header with the public key, every event, ending on a checkpoint"
must "audit verify --offline of the API export" "$K" audit verify --offline api-audit.jsonl --pubkey api-audit.pem
sed '5s/"outcome":"[^"]*"/"outcome":"edited"/' api-audit.jsonl > api-audit-edited.jsonl
cmp -s api-audit.jsonl api-audit-edited.jsonl && fail "the edit did not change the export"
if "$K" audit verify --offline api-audit-edited.jsonl --pubkey api-audit.pem >out 2>err; then
  fail "an edited API export verified"
fi
ok "an API export with one event edited fails offline verification"
stop_daemon
[ "$drc" = 0 ] || fail "keywardend exited $drc after SIGTERM, want 0"
grep -q "stopped cleanly" daemon.log || fail "daemon log lacks 'stopped cleanly'"
ok "keywardend stops cleanly"
must "audit verify after the C++ client test" "$K" audit verify
# The log keywardend wrote, exported by hsm-keytool on the host, must
# verify offline as well.
must "audit export of the daemon's log" "$K" audit export --out audit.jsonl --pubkey-out audit.pem
must "audit verify --offline of the export" "$K" audit verify --offline audit.jsonl --pubkey audit.pem
"$K" audit query --limit 1000000 --json >out 2>err || fail "audit query"
grep -qF "$(cat admin.tok)" out && fail "the admin token appears in the audit log"
grep -qF "$(cat admin.tok)" daemon.log && fail "the admin token appears in the daemon log"
ok "the admin token appears neither in the audit log nor in the daemon log"
echo "all $checks server_http checks passed in $(($(date +%s) - t_begin)) s"
