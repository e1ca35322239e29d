#!/bin/bash
# Screenshot test of the real tray icon (tessera-tray, ksni backend) on a virtual X display.
#
#   installer/ci/tray-screenshot.sh [OUT_DIR]      (default OUT_DIR: target/tray-screenshots)
#
# Starts Xvfb, then inside `dbus-run-session` a StatusNotifierItem watcher
# (`status-notifier-watcher`) and host (`gtk-sni-tray-standalone`), and the tray:
#   1. with no agent running   -> grey "agent unreachable" icon, menu offers "Start agent";
#   2. with a sandbox agent (own config/state/socket under a temp dir, one authorization-code
#      product and no code)    -> vermillion "Blocked" icon, menu names the product as blocked;
#   3. right-clicks the icon   -> the menu opens (screenshot differs where the menu is drawn);
#   4. stops and restarts the agent -> grey, then vermillion again (the tray reconnects);
#   5. activates an authorization code issued by the marketplace emulator (koogallery-sim)
#                              -> bluish-green "Active" icon, menu shows the expiry date;
#   6. clicks "Quit tray" through the dbusmenu (as a host does) -> the tray exits cleanly.
# Also: a second tray of the same user exits at once (single instance), and the activated code
# appears in no log.
# Each step checks the screenshot's pixels for the state colour (assets/icons/src/*.svg) and reads
# the menu back over D-Bus from the item's com.canonical.dbusmenu `GetLayout`. The PNGs are left
# in OUT_DIR, printed at the end, for a person to look at.
#
# Needs (Debian): xvfb imagemagick xdotool dbus-daemon (dbus-run-session) libglib2.0-bin (gdbus)
#   curl haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils
# Binaries: built here with cargo (debug) unless TESSERA_BIN_DIR names a directory holding
# tessera-tray, tessera-agent and tessera (e.g. /usr/bin after installing the .deb); the
# emulator is TESSERA_SIM, default target/debug/koogallery-sim.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if [ "${1:-}" = "--inside-session" ]; then
  shift
  OUT=$1 BIN=$2 WORK=$3 SIM=$4
  # Pixel colours of the state icons (sRGB), and how many must show (the host draws the icon
  # at ~20-24 px: a 16 px icon is already ~100 state-coloured pixels).
  GREY='#6E6E6E' VERMILLION='#D55E00' GREEN='#009E73' MIN_PIXELS=60

  pids=()
  cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
  trap cleanup EXIT

  fail() { echo "FAIL: $*" >&2; echo "logs and screenshots: $OUT" >&2; exit 1; }

  # count_colour FILE COLOUR -> number of pixels within 6% of COLOUR
  count_colour() {
    convert "$1" -alpha off -fuzz 6% -fill black +opaque "$2" -fill white -opaque "$2" \
      -format '%[fx:round(mean*w*h)]' info:
  }
  # centre_of FILE COLOUR -> "X Y" of the bounding box of COLOUR pixels
  centre_of() {
    convert "$1" -alpha off -fuzz 6% -fill black +opaque "$2" -fill white -opaque "$2" -trim \
      -format '%[fx:page.x+w/2] %[fx:page.y+h/2]' info: | awk '{printf "%d %d\n", $1, $2}'
  }
  # shoot NAME COLOUR: waits (max 20 s) until COLOUR shows, keeps the screenshot as NAME.png
  shoot() {
    local file="$OUT/$1.png" n=0
    for _ in $(seq 1 40); do
      import -window root "$file"
      n=$(count_colour "$file" "$2")
      [ "$n" -ge "$MIN_PIXELS" ] && { echo "$1: $n pixels of $2"; return 0; }
      sleep 0.5
    done
    fail "$1: only $n pixels of $2 on screen after 20 s"
  }
  # menu_labels: the tray's menu, read from its dbusmenu over the session bus
  menu_labels() {
    local items item menu
    items=$(gdbus call --session --dest org.kde.StatusNotifierWatcher \
      --object-path /StatusNotifierWatcher \
      --method org.freedesktop.DBus.Properties.Get org.kde.StatusNotifierWatcher RegisteredStatusNotifierItems)
    item=$(echo "$items" | grep -o "org.kde.StatusNotifierItem-[0-9]*-[0-9]*" | head -n1)
    [ -n "$item" ] || fail "no StatusNotifierItem registered ($items)"
    menu=$(gdbus call --session --dest "$item" --object-path /StatusNotifierItem \
      --method org.freedesktop.DBus.Properties.Get org.kde.StatusNotifierItem Menu |
      grep -o "'/[^']*'" | tr -d "'")
    gdbus call --session --dest "$item" --object-path "$menu" \
      --method com.canonical.dbusmenu.GetLayout -- 0 -1 "['label']"
  }
  expect_menu() {
    local layout
    layout=$(menu_labels)
    echo "$layout" > "$OUT/$1-menu-layout.txt"
    shift
    for label in "$@"; do
      echo "$layout" | grep -qF "'$label" || fail "menu lacks \"$label\": $layout"
    done
  }
  wait_registered() {
    for _ in $(seq 1 40); do
      if gdbus call --session --dest org.kde.StatusNotifierWatcher --object-path /StatusNotifierWatcher \
        --method org.freedesktop.DBus.Properties.Get org.kde.StatusNotifierWatcher \
        RegisteredStatusNotifierItems 2>/dev/null | grep -q StatusNotifierItem-; then
        return 0
      fi
      sleep 0.5
    done
    fail "the tray never registered with the StatusNotifierWatcher"
  }

  status-notifier-watcher > "$OUT/watcher.log" 2>&1 & pids+=($!)
  for _ in $(seq 1 20); do
    gdbus introspect --session --dest org.kde.StatusNotifierWatcher --object-path /StatusNotifierWatcher \
      > /dev/null 2>&1 && break
    sleep 0.25
  done
  gtk-sni-tray-standalone --top > "$OUT/host.log" 2>&1 & pids+=($!)
  sleep 1

  export TESSERA_SOCKET="$WORK/agent.sock" TESSERA_CONFIG_DIR="$WORK/config" \
    TESSERA_STATE_DIR="$WORK/state" TESSERA_SYSTEM_PRODUCTS_DIR="$WORK/system-products" \
    TESSERA_TRAY_LOCK="$WORK/tray.lock" RUST_LOG=info
  mkdir -p "$TESSERA_CONFIG_DIR/products.d" "$TESSERA_SYSTEM_PRODUCTS_DIR"
  cat > "$TESSERA_CONFIG_DIR/products.d/foocad.toml" <<'EOF'
product_id = "foocad-2026"
name = "FooCAD 2026"
models = ["authorization_code"]
EOF

  port=$(( 20000 + RANDOM % 20000 ))
  "$SIM" serve --primary "127.0.0.1:$port" --fallback "127.0.0.1:$((port + 1))" \
    --state-dir "$WORK/sim" > "$OUT/sim.log" 2>&1 & pids+=($!)
  printf '%s\n' '[marketplace]' "base_url = \"https://127.0.0.1:$port\"" \
    "fallback_url = \"https://127.0.0.1:$((port + 1))\"" "ca_file = \"$WORK/sim/ca.pem\"" \
    'trust_server_time = false' '[secrets]' 'store = "file"' > "$TESSERA_CONFIG_DIR/tessera.toml"

  "$BIN/tessera-tray" --no-notifications > "$OUT/tray.log" 2>&1 & tray=$!; pids+=("$tray")
  wait_registered

  # 1. no agent: grey icon, "Start agent" offered
  shoot 1-unreachable "$GREY"
  expect_menu 1-unreachable "Tessera agent is not running" "Start agent" "Quit tray"

  # A second tray of the same user must not start a second icon.
  "$BIN/tessera-tray" --no-notifications > "$OUT/tray-second.log" 2>&1 ||
    fail "the second tray exited with an error"
  grep -q "already running" "$OUT/tray-second.log" || fail "the second tray did not see the first"

  # 2. sandbox agent with a product and no code: blocked
  printf 'SIMTESTAK0000000000\nsim-test-secret-key-do-not-use-in-production\n' |
    "$BIN/tessera-agent" import-credentials > "$OUT/credentials.log" 2>&1 || fail "import-credentials failed"
  "$BIN/tessera-agent" run > "$OUT/agent.log" 2>&1 & agent=$!; pids+=("$agent")
  shoot 2-blocked "$VERMILLION"
  [ "$(count_colour "$OUT/2-blocked.png" "$GREY")" -lt "$MIN_PIXELS" ] ||
    fail "2-blocked: the grey icon is still shown"
  expect_menu 2-blocked "FooCAD 2026: blocked, no License or code yet" \
    "Copy device fingerprint" "Activate authorization code from clipboard" "Renew on KooGallery" "Quit tray"
  if echo "$(menu_labels)" | grep -qF "'Start agent"; then fail "2-blocked: menu still offers Start agent"; fi

  # 3. open the menu with a right click on the icon
  read -r x y < <(centre_of "$OUT/2-blocked.png" "$VERMILLION")
  xdotool mousemove "$x" "$y" click 3
  changed=0
  for _ in $(seq 1 20); do
    sleep 0.5
    import -window root "$OUT/3-menu-open.png"
    changed=$(compare -metric AE -fuzz 2% "$OUT/2-blocked.png" "$OUT/3-menu-open.png" null: 2>&1 || true)
    changed=${changed%% *}
    [ "${changed%.*}" -ge 3000 ] && break
  done
  [ "${changed%.*}" -ge 3000 ] || fail "3-menu-open: no menu appeared after right-clicking ($x,$y) ($changed pixels changed)"
  echo "3-menu-open: $changed pixels changed by the menu"
  xdotool key Escape || true
  # Away from the icon, so no tooltip covers the next screenshots.
  xdotool mousemove 600 380 || true
  sleep 0.5

  # 4. the agent restarts: the tray shows it gone, then reconnects on its own
  kill "$agent"; wait "$agent" 2>/dev/null || true
  shoot 4-agent-stopped "$GREY"
  "$BIN/tessera-agent" run >> "$OUT/agent.log" 2>&1 & agent=$!; pids+=("$agent")
  shoot 4-agent-restarted "$VERMILLION"

  # 5. a code bought on the (emulated) marketplace and activated: Active
  api="https://127.0.0.1:$port/sim/control"
  order=$(curl -sf --cacert "$WORK/sim/ca.pem" "$api/orders" -H 'content-type: application/json' \
    -d '{"model":"authorization_code","product_id":"foocad-2026"}' | sed -n 's/.*"order_id":"\([^"]*\)".*/\1/p')
  code=$(curl -sf --cacert "$WORK/sim/ca.pem" -X POST "$api/orders/$order/codes" |
    sed -n 's/.*"code":"\([^"]*\)".*/\1/p')
  [ -n "$code" ] || fail "the emulator issued no code"
  curl -sf --cacert "$WORK/sim/ca.pem" -X POST "$api/codes/$code/accept" > /dev/null || fail "code not accepted"
  echo "$code" | "$BIN/tessera" activate - > "$OUT/activate.txt" 2>&1 || fail "tessera activate failed"
  shoot 5-active "$GREEN"
  [ "$(count_colour "$OUT/5-active.png" "$VERMILLION")" -lt "$MIN_PIXELS" ] ||
    fail "5-active: the blocked icon is still shown"
  expect_menu 5-active "FooCAD 2026: active until " "Check for updates" "Quit tray"
  if grep -qF "$code" "$OUT"/*.log "$OUT"/*-layout.txt; then fail "the authorization code leaked into a log"; fi

  # 6. a click delivered through the dbusmenu, as a host sends it: "Quit tray" ends the tray
  quit_id=$(menu_labels | grep -o "([0-9]*, {'label': <'Quit tray'" | grep -o '^([0-9]*' | tr -d '(')
  [ -n "$quit_id" ] || fail "no Quit tray item id"
  item=$(gdbus call --session --dest org.kde.StatusNotifierWatcher --object-path /StatusNotifierWatcher \
    --method org.freedesktop.DBus.Properties.Get org.kde.StatusNotifierWatcher RegisteredStatusNotifierItems |
    grep -o "org.kde.StatusNotifierItem-[0-9]*-[0-9]*" | head -n1)
  gdbus call --session --dest "$item" --object-path /MenuBar --method com.canonical.dbusmenu.Event \
    -- "$quit_id" clicked '<"">' 0 > /dev/null 2>&1 || true  # the tray may be gone before it replies
  for _ in $(seq 1 40); do kill -0 "$tray" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$tray" 2>/dev/null; then fail "the tray did not quit from its menu"; fi
  wait "$tray" || fail "the tray exited with an error after Quit"
  echo "6-quit: the tray quit from its menu"
  echo "tray screenshot test passed"
  exit 0
fi

OUT=${1:-$ROOT/target/tray-screenshots}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.png "$OUT"/*.txt "$OUT"/*.log

if [ -n "${TESSERA_BIN_DIR:-}" ]; then
  BIN=$TESSERA_BIN_DIR
else
  (cd "$ROOT" && cargo build --quiet --workspace --all-targets)  # the test build's feature set (dev-dependencies included): nothing recompiles after the tests
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
fi
SIM=${TESSERA_SIM:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/koogallery-sim}
for b in tessera-tray tessera-agent tessera; do
  [ -x "$BIN/$b" ] || { echo "FAIL: $BIN/$b is missing" >&2; exit 1; }
done
[ -x "$SIM" ] || { echo "FAIL: no koogallery-sim at $SIM" >&2; exit 1; }

WORK=$(mktemp -d)
display=90
while [ -e "/tmp/.X11-unix/X$display" ] || [ -e "/tmp/.X$display-lock" ]; do display=$((display + 1)); done
Xvfb ":$display" -screen 0 640x400x24 -nolisten tcp > "$OUT/xvfb.log" 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 40); do [ -e "/tmp/.X11-unix/X$display" ] && break; sleep 0.25; done
export DISPLAY=":$display"
# XDG_RUNTIME_DIR for the session's own files; the agent's socket is set explicitly inside.
export XDG_RUNTIME_DIR="$WORK/run"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 0700 "$XDG_RUNTIME_DIR"

status=0
timeout 150 dbus-run-session -- "$0" --inside-session "$OUT" "$BIN" "$WORK" "$SIM" || status=$?
echo "tray screenshots: $OUT"
ls -1 "$OUT"/*.png 2>/dev/null || true
exit "$status"
