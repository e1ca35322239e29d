#!/bin/sh
# Tessera lifecycle script (KooGallery package tessera.tar.gz): uninstall. Silent, idempotent
# (removing what is already gone is not an error). Keeps /etc/tessera/products.d (vendor
# descriptors) unless PURGE=1, and never touches users' own state in their home directories.
#   sudo ./uninstall.sh     (also installed as $PREFIX/share/tessera/uninstall.sh)
set -eu
root=${TESSERA_ROOT:-}
prefix=${PREFIX:-/usr/local}
sysconf=${SYSCONFDIR:-/etc}
for f in bin/tessera bin/tessera-agent bin/tessera-tray lib/libtessera.so lib/libtessera.a \
  lib/pkgconfig/tessera.pc include/tessera.h share/tessera/uninstall.sh; do
  rm -f "$root$prefix/$f"
done
rm -rf "$root$prefix/lib/cmake/Tessera" "$root$prefix/include/tessera"
rmdir "$root$prefix/share/tessera" 2>/dev/null || true
rm -f "$root$sysconf/systemd/user/default.target.wants/tessera-agent.service" \
  "$root$sysconf/systemd/user/tessera-agent.service" "$root$sysconf/xdg/autostart/tessera-tray.desktop"
if [ "${PURGE:-0}" = 1 ]; then rm -rf "$root$sysconf/tessera"; fi
echo "tessera removed from $root$prefix"
