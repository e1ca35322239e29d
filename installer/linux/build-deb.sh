#!/bin/sh
# Builds the `tessera` Debian package (agent, CLI, tray, SDK) with cargo-deb.
#
#   installer/linux/build-deb.sh                  release build: the package to ship
#   installer/linux/build-deb.sh --profile dev    CI variant: packages the debug build the tests
#                                                 already made (fast; same layout, bigger files)
#   options: --no-build (use what target/<profile dir> holds), --out DIR (default target/debian)
#
# Steps: build the four crates, stage binaries (stripped), libraries, the generated .pc file and
# man pages (help2man from each binary's --help) under target/deb-staging, then
# `cargo deb -p tessera-tray --no-build` whose [package.metadata.deb] lists the staged files.
# Needs: cargo-deb 3.8.0 (`cargo install cargo-deb --locked --version 3.8.0`), help2man,
# binutils (strip), dpkg-dev (dpkg-shlibdeps for Depends).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
profile=release
build=yes
out="$root/target/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --no-build) build=no; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "build-deb.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) dir=release ;;
  dev) dir=debug ;;
  *) dir=$profile ;;
esac
target="${CARGO_TARGET_DIR:-$root/target}"
bindir="$target/$dir"

command -v help2man >/dev/null || { echo "build-deb.sh: help2man is needed (apt-get install help2man)" >&2; exit 1; }
cargo deb --version >/dev/null 2>&1 || { echo "build-deb.sh: cargo-deb is needed (cargo install cargo-deb --locked --version 3.8.0)" >&2; exit 1; }

if [ "$build" = yes ]; then
  (cd "$root" && cargo build --profile "$profile" -p tessera-agent -p tessera-cli -p tessera-tray -p tessera-sdk)
fi

# The metadata names target/deb-staging relative to the workspace; stage there whatever the
# target dir is.
stage="$root/target/deb-staging"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/lib/pkgconfig" "$stage/man"
for b in tessera-agent tessera tessera-tray; do
  [ -x "$bindir/$b" ] || { echo "build-deb.sh: $bindir/$b is missing (build first)" >&2; exit 1; }
  install -m 0755 "$bindir/$b" "$stage/bin/$b"
  strip --strip-unneeded "$stage/bin/$b"
done
for lib in libtessera.so libtessera.a; do
  if [ -f "$bindir/$lib" ]; then src="$bindir/$lib"; else src="$bindir/deps/$lib"; fi
  [ -f "$src" ] || { echo "build-deb.sh: $lib is missing in $bindir (build tessera-sdk first)" >&2; exit 1; }
  install -m 0644 "$src" "$stage/lib/$lib"
done
strip --strip-unneeded "$stage/lib/libtessera.so"
strip --strip-debug "$stage/lib/libtessera.a"

version=$(sed -n 's/^#define TESSERA_VERSION_STRING "\(.*\)"$/\1/p' "$root/crates/tessera-sdk/include/tessera/version.h")
sed -e "s|@PREFIX@|/usr|" -e "s|@VERSION@|$version|" "$root/crates/tessera-sdk/tessera.pc.in" \
  > "$stage/lib/pkgconfig/tessera.pc"

man() {
  help2man --no-info --section=1 --name="$2" --output="$stage/man/$1.1" "$stage/bin/$1"
  gzip -9n "$stage/man/$1.1"
}
man tessera-agent "per-user Tessera License agent"
man tessera "Tessera License client command line"
man tessera-tray "Tessera License status icon for the system tray"

fast=""
[ "$profile" = release ] || fast="--fast"
mkdir -p "$out"
(cd "$root" && cargo deb -p tessera-tray --no-build --no-strip $fast --output "$out")
ls -l "$out"/tessera_*.deb
