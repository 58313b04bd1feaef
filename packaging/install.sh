#!/bin/sh
# Install relay as a systemd service, or remove it. Safe to run again (idempotent).
#
#   sudo sh packaging/install.sh [install] [PATH/TO/relay]   binary, unit, config, state dir
#                                  (from a release archive: the relay beside packaging/)
#   sudo sh packaging/install.sh uninstall [--purge]         remove; --purge also deletes
#                                                            /etc/relay and /var/lib/relay
set -eu

# RELAY_INSTALL_ROOT puts everything under another root (tests; image builds) and leaves
# systemd alone.
R=${RELAY_INSTALL_ROOT:-}
BIN=$R/usr/local/bin/relay
UNIT=$R/etc/systemd/system/relay.service
SOCKET=$R/etc/systemd/system/relay.socket
ADMIN_SOCKET=$R/etc/systemd/system/relay-admin.socket
DROPIN=$R/etc/systemd/system/relay.service.d/https.conf
SOCKET_DROPIN=$R/etc/systemd/system/relay.socket.d/https.conf
LITESTREAM_UNIT=$R/etc/systemd/system/relay-litestream.service
LITESTREAM_DROPIN=$R/etc/systemd/system/relay.service.d/litestream.conf
CONF_DIR=$R/etc/relay
STATE_DIR=$R/var/lib/relay
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

say() { printf 'relay-install: %s\n' "$*"; }
need_root() { [ -n "$R" ] || [ "$(id -u)" = 0 ] || { say "run as root (sudo)"; exit 1; }; }
have_systemd() { [ -z "$R" ] && [ -d /run/systemd/system ]; }
# 32 random bytes as 43 URL-safe characters: the admin token of a fresh install.
new_token() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

install_relay() {
    src=${1:-}
    # From a release archive the executable sits beside packaging/; from a checkout,
    # `make binary` put it in dist/.
    [ -n "$src" ] || { [ -x "$ROOT/relay" ] && [ ! -d "$ROOT/relay" ] && src="$ROOT/relay"; } || true
    [ -n "$src" ] || src="$ROOT/dist/relay"
    [ -x "$src" ] || { say "no executable at $src; build it with 'make binary' or pass its path"; exit 1; }
    need_root
    install -D -m 0755 "$src" "$BIN.new" && mv -f "$BIN.new" "$BIN"
    install -D -m 0644 "$ROOT/systemd/relay.service" "$UNIT"
    install -D -m 0644 "$ROOT/systemd/relay.socket" "$SOCKET"
    install -D -m 0644 "$ROOT/systemd/relay-admin.socket" "$ADMIN_SOCKET"
    install -d -m 0755 "$CONF_DIR"
    fresh=no
    if [ ! -e "$CONF_DIR/relay.toml" ]; then
        # A starter config with a random admin token and no sources: nothing listens for
        # webhooks with a well-known secret. An operator's edited config is never touched.
        umask 077
        sed -e "s|@ADMIN_TOKEN@|$(new_token)|" "$HERE/relay.toml" > "$CONF_DIR/relay.toml"
        chmod 0600 "$CONF_DIR/relay.toml"  # root only: the unit passes it as a credential
        fresh=yes
        say "wrote $CONF_DIR/relay.toml with a random admin token and no sources yet"
    else
        say "kept existing $CONF_DIR/relay.toml"
    fi
    "$BIN" check-config "$CONF_DIR/relay.toml" > /dev/null || say "config needs attention (see above)"
    # HTTPS on ports below 1024 needs one capability, granted only when [server.tls] is on.
    if grep -q '^\[server\.tls\]' "$CONF_DIR/relay.toml"; then
        install -D -m 0644 "$ROOT/systemd/relay-https.conf" "$DROPIN"
        install -D -m 0644 "$ROOT/systemd/relay-https.socket.conf" "$SOCKET_DROPIN"
        say "[server.tls] is set: relay's socket is port 443 ($SOCKET_DROPIN)"
    else
        rm -f "$DROPIN" "$SOCKET_DROPIN"
    fi
    # Off-box copies (docs/operations.md): with /etc/relay/litestream.yml, Litestream runs
    # beside relay and a missing database is restored before relay starts.
    if [ -e "$CONF_DIR/litestream.yml" ]; then
        install -D -m 0644 "$ROOT/systemd/relay-litestream.service" "$LITESTREAM_UNIT"
        install -D -m 0644 "$ROOT/systemd/relay-litestream.conf" "$LITESTREAM_DROPIN"
        command -v litestream > /dev/null || [ -n "$R" ] || \
            say "$CONF_DIR/litestream.yml is there but litestream is not installed (see docs)"
        say "Litestream will copy the database off the box ($CONF_DIR/litestream.yml)"
    else
        rm -f "$LITESTREAM_UNIT" "$LITESTREAM_DROPIN"
    fi
    if have_systemd; then
        systemctl daemon-reload
        # The sockets first: from now on they stay open across restarts of relay.
        systemctl enable relay.socket relay-admin.socket relay.service
        [ -e "$LITESTREAM_UNIT" ] && systemctl enable relay-litestream.service
        systemctl start relay.socket relay-admin.socket
        if [ "$fresh" = no ] && systemctl is-active --quiet relay.service; then
            systemctl restart relay.service
            say "relay restarted on the new binary; 'systemctl status relay'"
            return
        fi
    else
        say "systemd is not running here: installed files only"
    fi
    say "next:"
    say "  1. add your [[sources]], [[destinations]] and [[routes]] to $CONF_DIR/relay.toml"
    say "     (docs/providers.md, docs/routing.md; every key: config.example.toml)"
    say "  2. sudo relay check-config $CONF_DIR/relay.toml"
    say "  3. sudo systemctl start relay; then 'journalctl -u relay -f'"
    say "  the console and admin API: http://127.0.0.1:8081/ui/ with the token in [admin]"
}

uninstall_relay() {
    need_root
    if have_systemd; then
        systemctl disable --now relay.service relay.socket relay-admin.socket 2>/dev/null || true
    fi
    rm -f "$UNIT" "$SOCKET" "$ADMIN_SOCKET" "$DROPIN" "$SOCKET_DROPIN" "$BIN" \
        "$LITESTREAM_UNIT" "$LITESTREAM_DROPIN"
    have_systemd && systemctl daemon-reload || true
    if [ "${1:-}" = "--purge" ]; then
        rm -rf "$CONF_DIR" "$STATE_DIR" "$R/var/lib/private/relay"
        say "removed relay, its config and its data"
    else
        say "removed relay; kept $CONF_DIR and $STATE_DIR (use --purge to delete them)"
    fi
}

case "${1:-install}" in
    install) [ $# -gt 0 ] && shift; install_relay "${1:-}" ;;
    uninstall) shift; uninstall_relay "${1:-}" ;;
    *) install_relay "$1" ;;
esac
