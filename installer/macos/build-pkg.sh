#!/bin/sh
# Builds tessera-<version>.pkg on macOS (pkgbuild ships with Xcode command line tools).
# NOT run on the project's machines; reviewed only.
#   installer/macos/build-pkg.sh STAGE VERSION
# STAGE holds the release build: tessera, tessera-agent, tessera-tray, libtessera.dylib,
# libtessera.a, tessera.pc (prefix /usr/local), and the SDK's include/ and cmake/ directories.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
stage=${1:?usage: build-pkg.sh STAGE VERSION}
version=${2:?usage: build-pkg.sh STAGE VERSION}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -d "$root/usr/local/bin" "$root/usr/local/lib/pkgconfig" "$root/usr/local/lib/cmake/Tessera" \
  "$root/usr/local/include/tessera" "$root/Library/LaunchAgents" "$root/Library/Application Support/Tessera"
install -m 0755 "$stage/tessera" "$stage/tessera-agent" "$stage/tessera-tray" "$root/usr/local/bin/"
install -m 0644 "$stage/libtessera.dylib" "$stage/libtessera.a" "$root/usr/local/lib/"
install -m 0644 "$stage/tessera.pc" "$root/usr/local/lib/pkgconfig/"
install -m 0644 "$stage/cmake/"*.cmake "$root/usr/local/lib/cmake/Tessera/"
install -m 0644 "$stage/include/tessera.h" "$root/usr/local/include/"
install -m 0644 "$stage/include/tessera/"* "$root/usr/local/include/tessera/"
install -m 0644 "$here/com.tessera.agent.plist" "$here/com.tessera.tray.plist" "$root/Library/LaunchAgents/"
install -m 0755 "$here/uninstall.sh" "$root/Library/Application Support/Tessera/"
pkgbuild --root "$root" --scripts "$here/scripts" --identifier com.tessera.pkg \
  --version "$version" --install-location / "tessera-$version.pkg"
