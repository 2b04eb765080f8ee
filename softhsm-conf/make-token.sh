#!/usr/bin/env bash
# Create a fresh SoftHSM token in DIR and print the environment that uses it.
#
#   softhsm-conf/make-token.sh DIR
#
# Reads from the environment (defaults are for throwaway test tokens only):
#   KEYWARDEN_TOKEN_LABEL  token label            (default: keywarden)
#   KEYWARDEN_SO_PIN       security officer PIN   (default: random)
#   KEYWARDEN_PIN          user PIN               (default: random)
# Writes DIR/softhsm2.conf, DIR/tokens/, DIR/user.pin (0600) and DIR/env, a
# file to source: it exports SOFTHSM2_CONF and KEYWARDEN_PIN_FILE. PINs never
# appear on a command line: softhsm2-util reads them from stdin-less prompts,
# so we feed them through a private file descriptor instead of argv.
set -euo pipefail
dir=${1:?usage: make-token.sh DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
label=${KEYWARDEN_TOKEN_LABEL:-keywarden}
rand() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
so_pin=${KEYWARDEN_SO_PIN:-$(rand)}
user_pin=${KEYWARDEN_PIN:-$(rand)}

umask 077
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
sed "s|@TOKENDIR@|$dir/tokens/|" "$here/softhsm2.conf.in" > "$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"

# softhsm2-util only takes PINs as options; the helper below passes them via a
# short-lived pkcs11 call instead so they never show up in `ps`.
module=${KEYWARDEN_HSM_MODULE:-}
if [ -z "$module" ]; then
  for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -f "$m" ] && module=$m && break
  done
fi
[ -n "$module" ] || { echo "make-token.sh: libsofthsm2.so not found (apt-get install softhsm2)" >&2; exit 3; }

printf '%s' "$user_pin" > "$dir/user.pin"
printf '%s' "$so_pin" > "$dir/so.pin"
chmod 600 "$dir/user.pin" "$dir/so.pin"

# softhsm2-util and pkcs11-tool only take PINs on argv (visible in `ps`), so
# the token is initialised through PyKCS11 (Debian python3-pykcs11) with the
# PINs passed in the environment of that one process.
MT_MODULE="$module" MT_LABEL="$label" MT_SO_PIN="$so_pin" MT_USER_PIN="$user_pin" \
  /usr/bin/python3 "$here/init_token.py"
cat > "$dir/env" <<ENV
export SOFTHSM2_CONF='$dir/softhsm2.conf'
export KEYWARDEN_HSM_MODULE='$module'
export KEYWARDEN_TOKEN_LABEL='$label'
export KEYWARDEN_PIN_FILE='$dir/user.pin'
ENV
echo "token '$label' created in $dir (source $dir/env to use it)"
