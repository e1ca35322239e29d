#!/bin/sh
# Silent uninstall of Tessera on macOS (installed to /Library/Application Support/Tessera/):
#   sudo "/Library/Application Support/Tessera/uninstall.sh"
# Removes programs, SDK and LaunchAgents; keeps every user's state (~/Library/…/tessera).
set -u
[ "$(id -u)" = 0 ] || { echo "run with sudo" >&2; exit 1; }
for uid in $(ps -axo uid=,comm= | awk '/tessera-(agent|tray)$/ {print $1}' | sort -u); do
  for job in com.tessera.agent com.tessera.tray; do
    launchctl bootout "gui/$uid/$job" >/dev/null 2>&1 || true
  done
done
rm -f /Library/LaunchAgents/com.tessera.agent.plist /Library/LaunchAgents/com.tessera.tray.plist
rm -f /usr/local/bin/tessera /usr/local/bin/tessera-agent /usr/local/bin/tessera-tray
rm -f /usr/local/lib/libtessera.dylib /usr/local/lib/libtessera.a /usr/local/lib/pkgconfig/tessera.pc
rm -rf /usr/local/include/tessera /usr/local/include/tessera.h /usr/local/lib/cmake/Tessera
rm -rf "/Library/Application Support/Tessera"
pkgutil --forget com.tessera.pkg >/dev/null 2>&1 || true
exit 0
