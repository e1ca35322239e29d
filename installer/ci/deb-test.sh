#!/bin/bash
# CI test of the Debian package: build, install, use, re-install, remove, purge.
#
#   installer/ci/deb-test.sh [OUT_DIR]           (default OUT_DIR: target/deb-test; logs land there)
#
# Must run as root on Debian 12 (CI does). Builds the CI variant of the package from the debug
# build (installer/linux/build-deb.sh --profile dev) unless TESSERA_DEB names a .deb to test, then:
#   1. dpkg -i, silently; checks the installed layout, the user unit (systemd-analyze verify) and
#      its global enablement, the autostart entry, the SDK (a C program compiled and linked with
#      `pkg-config tessera` against /usr/lib/libtessera.so and run), the man pages;
#   2. `tessera --version`, and the installed agent (/usr/bin/tessera-agent, product descriptor
#      in the installed /etc/tessera/products.d) against the marketplace emulator: `tessera doctor`,
#      a Blocked product, a code issued and accepted on the emulator, `tessera activate`, Active;
#   3. dpkg -i again over itself (idempotent install-over);
#   4. dpkg -r: the programs and the unit's enablement are gone, /etc configuration stays;
#   5. dpkg --purge: nothing of the package is left anywhere, the user's state is untouched.
# Needs: cargo-deb 3.8.0, help2man, dpkg-dev, gcc, pkg-config, curl, systemd (systemd-analyze).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/target/deb-test}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
started=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - started )) s)"; }
fail() { echo "FAIL: $*" >&2; echo "logs: $OUT" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i)"
if dpkg -s tessera >/dev/null 2>&1; then
  fail "the tessera package is already installed here; this test installs and purges it"
fi

if [ -n "${TESSERA_DEB:-}" ]; then
  DEB=$TESSERA_DEB
else
  step "build (debug) and package (CI variant)"
  (cd "$ROOT" && cargo build --quiet --workspace --all-targets)  # all targets: the feature set of the test build (dev-dependencies included), so after `cargo nextest run --workspace` nothing recompiles
  "$ROOT/installer/linux/build-deb.sh" --profile dev --no-build --out "$OUT/deb" > "$OUT/build-deb.log" 2>&1 ||
    { cat "$OUT/build-deb.log" >&2; fail "the package did not build"; }
  DEB=$(ls "$OUT"/deb/tessera_*.deb)
fi
SIM=${TESSERA_SIM:-$TARGET/debug/koogallery-sim}
[ -x "$SIM" ] || fail "no koogallery-sim at $SIM (cargo build -p koogallery-sim)"

WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Never leave the package behind on the CI machine, whatever failed.
  if dpkg -s tessera >/dev/null 2>&1; then dpkg --purge tessera >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step "1. install $(basename "$DEB")"
DEBIAN_FRONTEND=noninteractive dpkg -i "$DEB" < /dev/null > "$OUT/install.log" 2>&1 ||
  { cat "$OUT/install.log" >&2; fail "dpkg -i failed"; }
dpkg -L tessera | sort > "$OUT/files.txt"
version=$(dpkg-query -W -f '${Version}' tessera)
upstream=${version%-*}
for f in /usr/bin/tessera /usr/bin/tessera-agent /usr/bin/tessera-tray; do
  [ -x "$f" ] || fail "$f is not installed"
done
for f in /usr/lib/libtessera.so /usr/lib/libtessera.a /usr/include/tessera.h \
  /usr/include/tessera/iscdesk.hpp /usr/include/tessera/version.h \
  /usr/lib/cmake/Tessera/TesseraConfig.cmake /usr/lib/cmake/Tessera/TesseraConfigVersion.cmake \
  /usr/lib/pkgconfig/tessera.pc /usr/lib/systemd/user/tessera-agent.service \
  /etc/xdg/autostart/tessera-tray.desktop /usr/share/applications/tessera-tray.desktop \
  /usr/share/icons/hicolor/scalable/apps/tessera.svg /usr/share/icons/hicolor/16x16/apps/tessera.png \
  /usr/share/man/man1/tessera.1.gz /usr/share/man/man1/tessera-agent.1.gz \
  /usr/share/man/man1/tessera-tray.1.gz /usr/share/doc/tessera/copyright; do
  [ -f "$f" ] || fail "$f is not installed"
done
[ -d /etc/tessera/products.d ] || fail "/etc/tessera/products.d is missing"
link=/etc/systemd/user/default.target.wants/tessera-agent.service
[ "$(readlink "$link")" = /usr/lib/systemd/user/tessera-agent.service ] ||
  fail "the agent's user unit is not enabled globally ($link)"
unit=/usr/lib/systemd/user/tessera-agent.service
for hardening in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes Restart=on-failure; do
  grep -qx "$hardening" "$unit" || fail "the unit lacks $hardening"
done
grep -qx 'Exec=tessera-tray' /etc/xdg/autostart/tessera-tray.desktop || fail "autostart does not start tessera-tray"
if command -v systemd-analyze >/dev/null; then
  XDG_RUNTIME_DIR=$WORK systemd-analyze verify --user --man=no "$unit" > "$OUT/unit-verify.log" 2>&1 ||
    { cat "$OUT/unit-verify.log" >&2; fail "systemd-analyze rejects the user unit"; }
  if grep -q . "$OUT/unit-verify.log"; then cat "$OUT/unit-verify.log" >&2; fail "systemd-analyze warns about the user unit"; fi
fi

step "SDK from the installed paths"
cat > "$WORK/sdk.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <tessera.h>
#include <tessera/version.h>
int main(void) {
  const char *v = tessera_version();
  printf("%s\n", v);
  return strcmp(v, TESSERA_VERSION_STRING) == 0 ? 0 : 1;
}
EOF
# shellcheck disable=SC2046
gcc -std=c11 -Wall -Werror -o "$WORK/sdk" "$WORK/sdk.c" $(pkg-config --cflags --libs tessera) ||
  fail "a C program does not build against the installed SDK"
"$WORK/sdk" > "$OUT/sdk.txt" || fail "the installed libtessera reports another version than its header"

step "2. the installed programs"
for b in tessera tessera-agent tessera-tray; do
  got=$("/usr/bin/$b" --version)
  [ "$got" = "$b $upstream" ] || fail "$b --version says '$got', expected '$b $upstream'"
done

# One user's session: home, runtime dir, config pointing at the emulator.
export HOME=$WORK/home XDG_RUNTIME_DIR=$WORK/run
unset XDG_CONFIG_HOME XDG_STATE_HOME TESSERA_CONFIG_DIR TESSERA_STATE_DIR TESSERA_SOCKET TESSERA_SYSTEM_PRODUCTS_DIR
mkdir -p "$HOME/.config/tessera" && mkdir -p "$XDG_RUNTIME_DIR" && chmod 0700 "$XDG_RUNTIME_DIR"
port=$(( 20000 + RANDOM % 20000 ))
"$SIM" serve --primary "127.0.0.1:$port" --fallback "127.0.0.1:$((port + 1))" \
  --state-dir "$WORK/sim" > "$OUT/sim.log" 2>&1 & pids+=($!)
for _ in $(seq 1 80); do [ -f "$WORK/sim/ca.pem" ] && curl -sf --cacert "$WORK/sim/ca.pem" \
  "https://127.0.0.1:$port/sim/control/info" >/dev/null && break; sleep 0.25; done
[ -f "$WORK/sim/ca.pem" ] || fail "the emulator did not start"
cat > "$HOME/.config/tessera/tessera.toml" <<EOF
[marketplace]
base_url = "https://127.0.0.1:$port"
fallback_url = "https://127.0.0.1:$((port + 1))"
ca_file = "$WORK/sim/ca.pem"
trust_server_time = false
[secrets]
store = "file"
EOF
cat > /etc/tessera/products.d/foocad.toml <<'EOF'
product_id = "foocad-2026"
name = "FooCAD 2026"
models = ["authorization_code"]
EOF
printf 'SIMTESTAK0000000000\nsim-test-secret-key-do-not-use-in-production\n' |
  /usr/bin/tessera-agent import-credentials > "$OUT/credentials.log" 2>&1 || fail "import-credentials failed"
/usr/bin/tessera-agent run > "$OUT/agent.log" 2>&1 & agent=$!; pids+=("$agent")
for _ in $(seq 1 80); do [ -S "$XDG_RUNTIME_DIR/tessera/agent.sock" ] && break; sleep 0.25; done
[ -S "$XDG_RUNTIME_DIR/tessera/agent.sock" ] || fail "the installed agent did not open its socket"

/usr/bin/tessera doctor > "$OUT/doctor.txt" 2>&1 || { cat "$OUT/doctor.txt" >&2; fail "tessera doctor failed"; }
/usr/bin/tessera status > "$OUT/status-before.txt" 2>&1 || true
grep -q 'BLOCKED' "$OUT/status-before.txt" || fail "the product is not blocked before activation"

api="https://127.0.0.1:$port/sim/control"
order=$(curl -sf --cacert "$WORK/sim/ca.pem" "$api/orders" -H 'content-type: application/json' \
  -d '{"model":"authorization_code","product_id":"foocad-2026"}' | sed -n 's/.*"order_id":"\([^"]*\)".*/\1/p')
[ -n "$order" ] || fail "the emulator created no order"
code=$(curl -sf --cacert "$WORK/sim/ca.pem" -X POST "$api/orders/$order/codes" |
  sed -n 's/.*"code":"\([^"]*\)".*/\1/p')
[ -n "$code" ] || fail "the emulator issued no code"
curl -sf --cacert "$WORK/sim/ca.pem" -X POST "$api/codes/$code/accept" > /dev/null || fail "the code was not accepted"
echo "$code" | /usr/bin/tessera activate - > "$OUT/activate.txt" 2>&1 ||
  { cat "$OUT/activate.txt" >&2; fail "tessera activate failed"; }
/usr/bin/tessera status > "$OUT/status-after.txt" 2>&1 || fail "tessera status failed"
grep -q 'ACTIVE' "$OUT/status-after.txt" || fail "the product is not active after activation"
grep -qF "$code" "$OUT/agent.log" "$OUT/status-after.txt" && fail "the code leaked into a log or output"
kill "$agent"; wait "$agent" 2>/dev/null || true
[ -f "$HOME/.local/state/tessera/agent.db" ] || fail "the agent kept no state"

step "3. install over itself"
DEBIAN_FRONTEND=noninteractive dpkg -i "$DEB" < /dev/null > "$OUT/reinstall.log" 2>&1 ||
  { cat "$OUT/reinstall.log" >&2; fail "installing over the installed package failed"; }
[ -L "$link" ] || fail "re-installing lost the unit's enablement"

step "4. remove"
DEBIAN_FRONTEND=noninteractive dpkg -r tessera < /dev/null > "$OUT/remove.log" 2>&1 || fail "dpkg -r failed"
for f in /usr/bin/tessera /usr/bin/tessera-agent /usr/bin/tessera-tray /usr/lib/libtessera.so \
  /usr/lib/systemd/user/tessera-agent.service "$link"; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is left after dpkg -r"
done
[ -f /etc/xdg/autostart/tessera-tray.desktop ] || fail "dpkg -r removed configuration (conffiles stay until purge)"

step "5. purge"
DEBIAN_FRONTEND=noninteractive dpkg --purge tessera < /dev/null > "$OUT/purge.log" 2>&1 || fail "dpkg --purge failed"
left=$(find /etc /usr /opt /var/lib/systemd /var/lib/dpkg/info -xdev -iname '*tessera*' 2>/dev/null || true)
[ -z "$left" ] || fail "left after purge: $left"
while read -r f; do
  if [ -f "$f" ] || [ -L "$f" ]; then fail "$f is left after purge"; fi
done < "$OUT/files.txt"
[ -f "$HOME/.local/state/tessera/agent.db" ] || fail "purging the package deleted the user's state"

if [ -z "${TESSERA_DEB:-}" ]; then
  step "6. KooGallery tarball: install, install over, uninstall (into a scratch root)"
  "$ROOT/installer/linux/build-tarball.sh" "$OUT/deb" > "$OUT/build-tarball.log" 2>&1 ||
    { cat "$OUT/build-tarball.log" >&2; fail "tessera.tar.gz did not build"; }
  mkdir -p "$WORK/tar" "$WORK/root"
  tar -C "$WORK/tar" -xzf "$OUT/deb/tessera.tar.gz"
  for s in install.sh uninstall.sh upgrade.sh; do
    [ -x "$WORK/tar/tessera/$s" ] || fail "tessera.tar.gz lacks the lifecycle script $s"
  done
  TESSERA_ROOT="$WORK/root" "$WORK/tar/tessera/install.sh" > "$OUT/tarball.log" 2>&1 || fail "install.sh failed"
  TESSERA_ROOT="$WORK/root" "$WORK/tar/tessera/upgrade.sh" >> "$OUT/tarball.log" 2>&1 || fail "upgrade.sh failed"
  got=$("$WORK/root/usr/local/bin/tessera" --version)
  [ "$got" = "tessera $upstream" ] || fail "the tarball's tessera says '$got'"
  grep -q "^ExecStart=/usr/local/bin/tessera-agent run$" "$WORK/root/etc/systemd/user/tessera-agent.service" ||
    fail "the tarball's unit does not run the agent from /usr/local"
  TESSERA_ROOT="$WORK/root" PURGE=1 "$WORK/root/usr/local/share/tessera/uninstall.sh" >> "$OUT/tarball.log" 2>&1 ||
    fail "uninstall.sh failed"
  TESSERA_ROOT="$WORK/root" PURGE=1 "$WORK/tar/tessera/uninstall.sh" >> "$OUT/tarball.log" 2>&1 ||
    fail "uninstall.sh is not idempotent"
  left=$(find "$WORK/root" -type f -o -type l)
  [ -z "$left" ] || fail "left after uninstall.sh: $left"
fi

step "deb test passed"
