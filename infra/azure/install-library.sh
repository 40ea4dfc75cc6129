#!/bin/sh
# Quiesce: install the hook library at /usr/local/lib/quiesce/quiesce_hooks.py (root-owned, mode
# 0755, replaced atomically; docs/databases.md). Run by the managed run command hooks.tf creates
# on each VM of a member that runs hooks; the library arrives base64-encoded in
# QUIESCE_LIBRARY_B64 and is installed only when its SHA-256 is QUIESCE_LIBRARY_SHA256, so a
# changed file never replaces the installed one. Hooks run it only as the VM's allowlist
# declares it (docs/guest-protocol.md).
set -eu
folder=/usr/local/lib/quiesce
install -d -o root -g root -m 0755 "$folder"
staged=$(mktemp "$folder/.quiesce_hooks.py.XXXXXX")
trap 'rm -f "$staged"' EXIT
printf '%s' "$QUIESCE_LIBRARY_B64" | base64 -d > "$staged"
actual=$(sha256sum "$staged" | cut -c1-64)
if [ "$actual" != "$QUIESCE_LIBRARY_SHA256" ]; then
  echo "the hook library has SHA-256 $actual, not the pinned $QUIESCE_LIBRARY_SHA256: not installed" >&2
  exit 1
fi
chown root:root "$staged"
chmod 0755 "$staged"
mv -f "$staged" "$folder/quiesce_hooks.py"
trap - EXIT
echo "installed the Quiesce hook library $actual at $folder/quiesce_hooks.py"
