#!/bin/sh
# Quiesce: install this VM's hook allowlist at /etc/quiesce/hooks.json (root-owned, mode 0644,
# replaced atomically). Run by the managed run command hooks.tf creates on each VM of a member;
# the allowlist arrives base64-encoded in QUIESCE_ALLOWLIST_B64 and is installed only when its
# SHA-256 is QUIESCE_ALLOWLIST_SHA256. The allowlist declares the only hooks Quiesce's run
# commands can run on this VM (docs/guest-protocol.md).
set -eu
folder=/etc/quiesce
install -d -o root -g root -m 0755 "$folder"
staged=$(mktemp "$folder/.hooks.json.XXXXXX")
trap 'rm -f "$staged"' EXIT
printf '%s' "$QUIESCE_ALLOWLIST_B64" | base64 -d > "$staged"
actual=$(sha256sum "$staged" | cut -c1-64)
if [ "$actual" != "$QUIESCE_ALLOWLIST_SHA256" ]; then
  echo "the hook allowlist has SHA-256 $actual, not the pinned $QUIESCE_ALLOWLIST_SHA256: not installed" >&2
  exit 1
fi
chown root:root "$staged"
chmod 0644 "$staged"
mv -f "$staged" "$folder/hooks.json"
trap - EXIT
echo "installed the Quiesce hook allowlist $actual at $folder/hooks.json"
