#!/bin/sh
# Tessera lifecycle script (KooGallery package tessera.tar.gz): install, or install over an
# existing installation (= upgrade). Silent, idempotent, safe to re-run after an interruption:
# every file is written to a temporary name and renamed into place, so a half-copied file never
# replaces a good one, and re-running finishes the job.
#   sudo ./install.sh                  installs under /usr/local (PREFIX) and /etc (SYSCONFDIR)
# TESSERA_ROOT=DIR installs into DIR as the root directory (packaging and tests).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=${TESSERA_ROOT:-}
prefix=${PREFIX:-/usr/local}
sysconf=${SYSCONFDIR:-/etc}

put() { # put SRC DEST MODE
  mkdir -p "$(dirname "$root$2")"
  cp "$1" "$root$2.tessera-new"
  chmod "$3" "$root$2.tessera-new"
  mv -f "$root$2.tessera-new" "$root$2"
}

for b in tessera tessera-agent tessera-tray; do put "$here/payload/bin/$b" "$prefix/bin/$b" 0755; done
put "$here/payload/lib/libtessera.so" "$prefix/lib/libtessera.so" 0644
put "$here/payload/lib/libtessera.a" "$prefix/lib/libtessera.a" 0644
sed "s|^prefix=/usr$|prefix=$prefix|" "$here/payload/lib/pkgconfig/tessera.pc" > "$here/payload/tessera.pc.local"
put "$here/payload/tessera.pc.local" "$prefix/lib/pkgconfig/tessera.pc" 0644
rm -f "$here/payload/tessera.pc.local"
for f in TesseraConfig.cmake TesseraConfigVersion.cmake; do
  put "$here/payload/lib/cmake/Tessera/$f" "$prefix/lib/cmake/Tessera/$f" 0644
done
put "$here/payload/include/tessera.h" "$prefix/include/tessera.h" 0644
for f in iscdesk.hpp version.h; do put "$here/payload/include/tessera/$f" "$prefix/include/tessera/$f" 0644; done
# The user unit runs the agent from this prefix.
sed "s|/usr/bin/tessera-agent|$prefix/bin/tessera-agent|" "$here/payload/tessera-agent.service" \
  > "$here/payload/tessera-agent.service.local"
put "$here/payload/tessera-agent.service.local" "$sysconf/systemd/user/tessera-agent.service" 0644
rm -f "$here/payload/tessera-agent.service.local"
mkdir -p "$root$sysconf/systemd/user/default.target.wants"
ln -sfn "$sysconf/systemd/user/tessera-agent.service" \
  "$root$sysconf/systemd/user/default.target.wants/tessera-agent.service"
sed "s|^Exec=tessera-tray$|Exec=$prefix/bin/tessera-tray|" "$here/payload/tessera-tray-autostart.desktop" \
  > "$here/payload/autostart.local"
put "$here/payload/autostart.local" "$sysconf/xdg/autostart/tessera-tray.desktop" 0644
rm -f "$here/payload/autostart.local"
mkdir -p "$root$sysconf/tessera/products.d"
put "$here/uninstall.sh" "$prefix/share/tessera/uninstall.sh" 0755
echo "tessera installed under $root$prefix"
