#!/bin/sh
# Write a random SECRET_KEY to the file named by $1 (mode 0600) unless it already holds one.
# `make run` and docker compose point SECRET_KEY_FILE at it, so they start with nothing configured
# and no key is shared between machines (var/ is git-ignored). Production sets its own SECRET_KEY.
set -eu
path="$1"
[ -s "$path" ] && exit 0
mkdir -p "$(dirname "$path")"
umask 077
python3 -c 'import secrets; print(secrets.token_urlsafe(50))' > "$path.$$"
mv "$path.$$" "$path"
echo "made a secret key for this machine in $path"
