#!/usr/bin/env bash
# Runs a command against a fresh private SoftHSM token in a temporary
# directory (never the system token), removed afterwards.
#
#   tests/with-token.sh COMMAND [ARGS...]
#
# The command sees SOFTHSM2_CONF, KEYWARDEN_HSM_MODULE, KEYWARDEN_TOKEN_LABEL,
# KEYWARDEN_PIN (and KEYWARDEN_PIN_FILE), KEYWARDEN_SO_PIN and KW_TEST_DIR (a
# scratch directory for stores and files).
set -euo pipefail
# meson passes built programs relative to the build dir: make every argument
# that names an existing file absolute before we change directory.
args=()
for a in "$@"; do
  if [[ "$a" == */* && -e "$a" ]]; then args+=("$(cd "$(dirname "$a")" && pwd)/$(basename "$a")"); else args+=("$a"); fi
done
set -- "${args[@]}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KW_TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kwtest.XXXXXX")
trap 'rm -rf "$KW_TEST_DIR"' EXIT
export KW_TEST_DIR
export KEYWARDEN_PIN=${KEYWARDEN_PIN:-test-user-pin-1234}
export KEYWARDEN_SO_PIN=${KEYWARDEN_SO_PIN:-test-so-pin-5678}
"$here/../softhsm-conf/make-token.sh" "$KW_TEST_DIR/hsm" >/dev/null
# shellcheck disable=SC1091
source "$KW_TEST_DIR/hsm/env"
export KEYWARDEN_STORE_URL="sqlite:$KW_TEST_DIR/keywarden.db"
cd "$KW_TEST_DIR"
"$@"
