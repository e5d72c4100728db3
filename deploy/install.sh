#!/bin/bash
# Builds crius from this checkout, installs it, and runs it.
#
#   sudo ./deploy/install.sh [--no-start]
#
# On a fresh Debian 12 machine this installs the build and runtime packages from apt
# (and Rust through rustup when no cargo is found), builds the release binaries, installs
#   /usr/local/bin/crius, /usr/libexec/crius/{crius-conmon,crius-pause},
#   /etc/crius/crius.conf, /etc/cni/net.d/10-crius-bridge.conflist, /etc/crictl.yaml
# (config files only when absent, so local changes survive a reinstall), adds a FORWARD
# rule that keeps pod traffic on the crius0 bridge, and (re)starts crius: as a systemd
# service when systemd runs, else in the background with its log in /var/log/crius.log
# and its pid in /run/crius/crius.pid. With --no-start it installs but neither stops nor
# starts crius.
set -euo pipefail

START=1
case "${1:-}" in
  --no-start) START=0 ;;
  "") ;;
  *) echo "usage: $0 [--no-start]" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
BIN_DIR=/usr/local/bin
LIBEXEC_DIR=/usr/libexec/crius
CONF_DIR=/etc/crius
CNI_DIR=/etc/cni/net.d
PID_FILE=/run/crius/crius.pid
LOG_FILE=/var/log/crius.log
BRIDGE=crius0
BUILD_PACKAGES="build-essential pkg-config protobuf-compiler ca-certificates curl"
RUNTIME_PACKAGES="runc containernetworking-plugins iptables iproute2 util-linux"

say() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"

# ---------------------------------------------------------------- packages
apt_install() {
  local missing="" p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
  [ -n "$missing" ] || return 0
  say "apt-get install$missing"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -q $missing </dev/null || { apt-get update -q </dev/null && apt-get install -y -q $missing </dev/null; }
}
# shellcheck disable=SC2086
apt_install $BUILD_PACKAGES $RUNTIME_PACKAGES

# ---------------------------------------------------------------- rust
if [ -z "${SUDO_USER:-}" ] || [ "${SUDO_USER:-root}" = root ]; then
  CARGO_HOME_GUESS=$HOME/.cargo
else
  CARGO_HOME_GUESS=$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo
fi
for dir in "${CARGO_HOME:-}/bin" "$HOME/.cargo/bin" "$CARGO_HOME_GUESS/bin"; do
  [ -x "$dir/cargo" ] && PATH="$dir:$PATH"
done
if ! command -v cargo >/dev/null; then
  say "no cargo found: installing Rust with rustup (https://rustup.rs)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  PATH="$HOME/.cargo/bin:$PATH"
fi
export PATH

# ---------------------------------------------------------------- build
say "building release binaries (cargo build --release)"
(cd "$TOP" && cargo build --release -p crius -p crius-conmon -p crius-pause)
TARGET=${CARGO_TARGET_DIR:-$TOP/target}/release

# ---------------------------------------------------------------- stop a running crius
running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid=$(cat "$PID_FILE")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q crius "/proc/$pid/comm" 2>/dev/null && echo "$pid"
}
systemd_running() { [ -d /run/systemd/system ]; }

if [ "$START" = 0 ]; then
  :
elif systemd_running && systemctl is-active --quiet crius 2>/dev/null; then
  say "stopping the crius service for the upgrade"
  systemctl stop crius
elif pid=$(running_pid); then
  say "stopping crius (pid $pid) for the upgrade"
  kill -TERM "$pid"
  for _ in $(seq 1 150); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  [ -d "/proc/$pid" ] && die "crius (pid $pid) did not stop within 15 s"
fi

# ---------------------------------------------------------------- install files
say "installing binaries into $BIN_DIR and $LIBEXEC_DIR"
# Through a temp name and a rename: a running monitor keeps its old binary.
install_bin() {
  install -D -m 0755 "$1" "$2.new"
  mv -f "$2.new" "$2"
}
install_bin "$TARGET/crius" "$BIN_DIR/crius"
install_bin "$TARGET/crius-conmon" "$LIBEXEC_DIR/crius-conmon"
install_bin "$TARGET/crius-pause" "$LIBEXEC_DIR/crius-pause"

install -d -m 0755 "$CONF_DIR" "$CONF_DIR/crius.conf.d" "$CNI_DIR"
if [ ! -e "$CONF_DIR/crius.conf" ]; then
  install -m 0644 "$HERE/crius.conf" "$CONF_DIR/crius.conf"
  say "installed $CONF_DIR/crius.conf"
elif ! cmp -s "$HERE/crius.conf" "$CONF_DIR/crius.conf"; then
  say "kept your $CONF_DIR/crius.conf (the shipped defaults are in $HERE/crius.conf)"
fi
effective=$("$BIN_DIR/crius" config) || die "$CONF_DIR/crius.conf does not load (see above)"
# The socket the config names (crius.api.listen), for the readiness check below.
SOCKET=$(printf '%s\n' "$effective" | sed -n 's/^listen = "\(.*\)"$/\1/p')
[ -n "$SOCKET" ] || die "cannot find crius.api.listen in the output of crius config"

have_network=
for f in "$CNI_DIR"/*.conflist "$CNI_DIR"/*.conf "$CNI_DIR"/*.json; do
  [ -e "$f" ] && have_network=1
done
if [ -z "$have_network" ]; then
  install -m 0644 "$HERE/10-crius-bridge.conflist" "$CNI_DIR/10-crius-bridge.conflist"
  say "installed $CNI_DIR/10-crius-bridge.conflist (bridge $BRIDGE, 10.85.0.0/16)"
else
  say "kept the CNI configs already in $CNI_DIR"
fi
if [ ! -e /etc/crictl.yaml ]; then
  install -m 0644 "$HERE/crictl.yaml" /etc/crictl.yaml
fi

# Pods on the bridge reach each other and the host, never beyond it.
if ! iptables -C FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null; then
  iptables -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  say "added iptables rule: FORWARD -i $BRIDGE ! -o $BRIDGE -j DROP"
fi

# ---------------------------------------------------------------- start
if [ "$START" = 0 ]; then
  say "installed; not started (--no-start)"
  exit 0
fi
if systemd_running; then
  install -m 0644 "$HERE/crius.service" /etc/systemd/system/crius.service
  systemctl daemon-reload
  systemctl enable --now crius
  say "crius runs as the systemd service crius (journalctl -u crius)"
else
  install -d -m 0755 /run/crius
  touch "$LOG_FILE"
  log_offset=$(stat -c %s "$LOG_FILE")
  # setsid: its own session, so it outlives this shell; no stdin.
  nohup setsid "$BIN_DIR/crius" </dev/null >>"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  say "started crius in the background (pid $(cat "$PID_FILE"), log $LOG_FILE)"
  # Ready once this very process listens on the socket (the file alone may be another
  # daemon's).
  pid=$(cat "$PID_FILE")
  ready=
  for _ in $(seq 1 300); do
    if ss -xlpH 2>/dev/null | grep -F " $SOCKET " | grep -q "pid=$pid,"; then
      ready=1
      break
    fi
    if ! running_pid >/dev/null; then
      rm -f "$PID_FILE"
      tail -c +"$((log_offset + 1))" "$LOG_FILE" | tail -n 5 >&2
      die "crius exited during start-up (the end of $LOG_FILE is above)"
    fi
    sleep 0.1
  done
  [ -n "$ready" ] || die "crius did not serve $SOCKET within 30 s (see $LOG_FILE)"
fi

if systemd_running; then
  # Type=notify: `systemctl enable --now` returned once crius sent READY=1.
  systemctl is-active --quiet crius || die "the crius service is not active (journalctl -u crius)"
fi
say "crius is serving on unix://$SOCKET"
if command -v crictl >/dev/null; then
  crictl version || true
fi
