#!/bin/sh
# Runs "$@" inside the current D-Bus session (start this script under `dbus-run-session`) with a
# fresh, unlocked gnome-keyring: fresh XDG_RUNTIME_DIR and XDG_DATA_HOME, password on stdin.
# See reference/toolchain-notes.md §6.
set -eu
runtime=$(mktemp -d)
data=$(mktemp -d)
chmod 0700 "$runtime" "$data"
export XDG_RUNTIME_DIR="$runtime" XDG_DATA_HOME="$data"
# The daemon forks into the background and prints its environment (nothing, on recent versions).
eval "$(printf 'tessera-test-password' | gnome-keyring-daemon --unlock --components=secrets)"
export GNOME_KEYRING_CONTROL
status=0
"$@" || status=$?
# The daemon outlives the bus; stop the one this script started, found by its bus name.
pid=$(dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
    org.freedesktop.DBus.GetConnectionUnixProcessID string:org.freedesktop.secrets 2>/dev/null |
    awk '/uint32/ { print $2 }')
if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
rm -rf "$runtime" "$data"
exit "$status"
