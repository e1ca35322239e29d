#!/bin/sh
# Builds tessera.tar.gz, the package KooGallery takes (PROTOCOL.md §4.5 item 6: `<software>.tar.gz`
# with the lifecycle scripts), from the files build-deb.sh staged under target/deb-staging:
#   installer/linux/build-deb.sh [--profile dev]  &&  installer/linux/build-tarball.sh [OUT_DIR]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/target/debian}
stage="$root/target/deb-staging"
[ -x "$stage/bin/tessera-agent" ] || { echo "build-tarball.sh: run build-deb.sh first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg="$work/tessera"
mkdir -p "$pkg/payload/include/tessera" "$pkg/payload/lib/cmake/Tessera"
cp -r "$stage/bin" "$pkg/payload/"
cp -r "$stage/lib/." "$pkg/payload/lib/"
sdk="$root/crates/tessera-sdk"
cp "$sdk/include/tessera.h" "$pkg/payload/include/"
cp "$sdk/include/tessera/iscdesk.hpp" "$sdk/include/tessera/version.h" "$pkg/payload/include/tessera/"
cp "$sdk/cmake/TesseraConfig.cmake" "$sdk/cmake/TesseraConfigVersion.cmake" "$pkg/payload/lib/cmake/Tessera/"
cp "$root/installer/linux/tessera-agent.service" "$root/assets/desktop/tessera-tray-autostart.desktop" "$pkg/payload/"
cp "$root/installer/linux/tarball/"*.sh "$pkg/"
mkdir -p "$out"
tar -C "$work" -czf "$out/tessera.tar.gz" tessera
ls -l "$out/tessera.tar.gz"
