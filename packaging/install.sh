#!/bin/sh
# Install relay as a systemd service, or remove it. Safe to run again (idempotent).
#
#   sudo sh packaging/install.sh [install] [PATH/TO/relay]   binary, unit, config, state dir
#   sudo sh packaging/install.sh uninstall [--purge]         remove; --purge also deletes
#                                                            /etc/relay and /var/lib/relay
set -eu

BIN=/usr/local/bin/relay
UNIT=/etc/systemd/system/relay.service
CONF_DIR=/etc/relay
STATE_DIR=/var/lib/relay
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

say() { printf 'relay-install: %s\n' "$*"; }
need_root() { [ "$(id -u)" = 0 ] || { say "run as root (sudo)"; exit 1; }; }
have_systemd() { [ -d /run/systemd/system ]; }

install_relay() {
    src=${1:-}
    [ -n "$src" ] || src="$ROOT/dist/relay"
    [ -x "$src" ] || { say "no executable at $src; build it with 'make binary' or pass its path"; exit 1; }
    need_root
    install -D -m 0755 "$src" "$BIN.new" && mv -f "$BIN.new" "$BIN"
    install -D -m 0644 "$ROOT/systemd/relay.service" "$UNIT"
    install -d -m 0755 "$CONF_DIR"
    if [ ! -e "$CONF_DIR/relay.toml" ]; then
        # Keep an operator's edited config; only a fresh install gets the commented example.
        sed -e 's|^path = "relay.db".*|path = "/var/lib/relay/relay.db"|' \
            "$ROOT/config.example.toml" > "$CONF_DIR/relay.toml"
        chmod 0600 "$CONF_DIR/relay.toml"  # root only: the unit passes it as a credential
        say "wrote $CONF_DIR/relay.toml: edit it, then 'systemctl restart relay'"
    else
        say "kept existing $CONF_DIR/relay.toml"
    fi
    "$BIN" check-config "$CONF_DIR/relay.toml" > /dev/null || say "config needs attention (see above)"
    if have_systemd; then
        systemctl daemon-reload
        systemctl enable --now relay.service
        say "relay is enabled and started; 'systemctl status relay', 'journalctl -u relay -f'"
    else
        say "systemd is not running here: installed files only"
    fi
}

uninstall_relay() {
    need_root
    if have_systemd; then
        systemctl disable --now relay.service 2>/dev/null || true
    fi
    rm -f "$UNIT" "$BIN"
    have_systemd && systemctl daemon-reload || true
    if [ "${1:-}" = "--purge" ]; then
        rm -rf "$CONF_DIR" "$STATE_DIR" /var/lib/private/relay
        say "removed relay, its config and its data"
    else
        say "removed relay; kept $CONF_DIR and $STATE_DIR (use --purge to delete them)"
    fi
}

case "${1:-install}" in
    install) shift 2>/dev/null || true; install_relay "${1:-}" ;;
    uninstall) shift; uninstall_relay "${1:-}" ;;
    *) install_relay "$1" ;;
esac
