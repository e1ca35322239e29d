#!/bin/sh
# Installs libtessera into PREFIX: lib/libtessera.{so,a}, include/tessera.h,
# include/tessera/{version.h,iscdesk.hpp}, lib/pkgconfig/tessera.pc, lib/cmake/Tessera/.
#
#   cargo build --release -p tessera-sdk && crates/tessera-sdk/install.sh /opt/tessera
#   crates/tessera-sdk/install.sh /opt/tessera target/debug       # another build directory
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prefix=${1:?usage: install.sh PREFIX [LIBDIR]}
libdir=${2:-$here/../../target/release}
for lib in libtessera.so libtessera.a; do
  if [ ! -f "$libdir/$lib" ] && [ -f "$libdir/deps/$lib" ]; then libdir_for=$libdir/deps; else libdir_for=$libdir; fi
  [ -f "$libdir_for/$lib" ] || { echo "install.sh: $lib not found in $libdir (build tessera-sdk first)" >&2; exit 1; }
done
# The version is the one generated from Cargo.toml into version.h.
version=$(sed -n 's/^#define TESSERA_VERSION_STRING "\(.*\)"$/\1/p' "$here/include/tessera/version.h")
mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/cmake/Tessera" "$prefix/include/tessera"
for lib in libtessera.so libtessera.a; do
  if [ -f "$libdir/$lib" ]; then src=$libdir/$lib; else src=$libdir/deps/$lib; fi
  install -m 0644 "$src" "$prefix/lib/$lib"
done
chmod 0755 "$prefix/lib/libtessera.so"
install -m 0644 "$here/include/tessera.h" "$prefix/include/tessera.h"
install -m 0644 "$here/include/tessera/version.h" "$here/include/tessera/iscdesk.hpp" "$prefix/include/tessera/"
install -m 0644 "$here/cmake/TesseraConfig.cmake" "$here/cmake/TesseraConfigVersion.cmake" "$prefix/lib/cmake/Tessera/"
abs_prefix=$(cd "$prefix" && pwd)
sed -e "s|@PREFIX@|$abs_prefix|" -e "s|@VERSION@|$version|" "$here/tessera.pc.in" > "$prefix/lib/pkgconfig/tessera.pc"
echo "installed libtessera $version into $abs_prefix"
