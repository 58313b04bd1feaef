#!/bin/sh
# A Debian package of relay, built with Debian's own dpkg-deb:
#
#   sh packaging/deb.sh VERSION DEBARCH EXECUTABLE OUTDIR    # -> OUTDIR/relay_VERSION_DEBARCH.deb
#
# What it installs: /usr/bin/relay; relay.service, relay.socket, relay-admin.socket,
# relay-agent.service and relay-litestream.service under /lib/systemd/system (the last two
# not enabled); /etc/relay/relay.toml as a conffile
# (an edited config survives upgrades, as dpkg keeps it); the example configs and the
# optional drop-ins under /usr/share/relay. The first install writes a random admin token
# into the config and enables the units without starting them (no sources yet). Removing
# the package keeps the database; purging removes the config and still keeps the database
# unless RELAY_PURGE_DATABASE=yes is set (docs/deploy.md).
set -eu
VERSION=$1
ARCH=$2
EXE=$3
OUT=$4
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
P=$WORK/relay_${VERSION}_$ARCH

install -D -m 0755 "$EXE" "$P/usr/bin/relay"
for unit in relay.service relay.socket relay-admin.socket relay-agent.service relay-litestream.service; do
    sed 's|/usr/local/bin/|/usr/bin/|g' "systemd/$unit" > "$WORK/$unit"
    install -D -m 0644 "$WORK/$unit" "$P/lib/systemd/system/$unit"
done
install -D -m 0644 packaging/relay.toml "$P/etc/relay/relay.toml"
install -D -m 0644 config.example.toml "$P/usr/share/relay/config.example.toml"
install -D -m 0644 packaging/agent.example.toml "$P/usr/share/relay/agent.example.toml"
install -D -m 0644 packaging/litestream.yml "$P/usr/share/relay/litestream.yml"
for dropin in relay-https.conf relay-https.socket.conf relay-litestream.conf; do
    sed 's|/usr/local/bin/|/usr/bin/|g' "systemd/$dropin" > "$WORK/$dropin"
    install -D -m 0644 "$WORK/$dropin" "$P/usr/share/relay/$dropin"
done
install -d -m 0755 "$P/usr/share/doc/relay"
cat > "$P/usr/share/doc/relay/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: relay
Source: webhook_relay-$VERSION.tar.gz, the release's source archive

Files: *
Copyright: 2026 relay developers
License: Apache-2.0
 On Debian systems, the full text of the Apache License version 2.0 can be found in
 /usr/share/common-licenses/Apache-2.0.
Comment: /usr/bin/relay bundles Python and the libraries listed, with their versions and
 licences, in the release's SBOM (relay-$VERSION-sbom-*.cdx.json).
EOF
# A native package's changelog, from CHANGELOG.md's entry for this version.
python3 packaging/debchangelog.py "$VERSION" CHANGELOG.md | gzip -9n > "$P/usr/share/doc/relay/changelog.gz"
chmod 0644 "$P/usr/share/doc/relay/changelog.gz"

install -d -m 0755 "$P/DEBIAN"
SIZE=$(du -sk "$P" | cut -f1)
cat > "$P/DEBIAN/control" <<EOF
Package: relay
Version: $VERSION
Architecture: $ARCH
Maintainer: relay developers <relay@example.org>
Installed-Size: $SIZE
Depends: libc6 (>= 2.31)
Recommends: systemd
Suggests: litestream, libpq5
Section: net
Priority: optional
Description: webhook relay: verify, store durably, deliver with retries
 relay receives webhooks from SaaS providers (Stripe, GitHub, Shopify, Slack,
 Twilio, Standard Webhooks, ...), verifies each signature, commits it to SQLite
 before it answers 2xx, drops duplicates by idempotency key, and delivers it to
 internal services with retries, backoff, dead letters, replay and alerts.
EOF
echo /etc/relay/relay.toml > "$P/DEBIAN/conffiles"
cat > "$P/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # A fresh config gets a random admin token (the template ships a placeholder, so no
    # two installs share one) and stays readable by root only: the unit passes it to the
    # service as a credential.
    if grep -q '@ADMIN_TOKEN@' /etc/relay/relay.toml 2>/dev/null; then
        token=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        sed -i "s|@ADMIN_TOKEN@|$token|" /etc/relay/relay.toml
    fi
    chmod 0600 /etc/relay/relay.toml
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    if command -v systemctl > /dev/null 2>&1; then
        # Enabled, not started: there are no sources yet. An upgrade restarts a running
        # relay, through its socket (connections wait instead of being refused).
        systemctl enable relay.socket relay-admin.socket relay.service > /dev/null 2>&1 || true
        if [ -n "$2" ] && [ -d /run/systemd/system ]; then
            systemctl try-restart relay.service || true
        fi
    fi
    if [ -z "$2" ]; then
        echo "relay: add your sources to /etc/relay/relay.toml, check it with"
        echo "relay: 'relay check-config /etc/relay/relay.toml', then 'systemctl start relay'"
    fi
fi
exit 0
EOF
cat > "$P/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop relay.service relay-litestream.service relay.socket relay-admin.socket \
        > /dev/null 2>&1 || true
fi
exit 0
EOF
cat > "$P/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
case "$1" in
    remove)
        if command -v systemctl > /dev/null 2>&1; then
            systemctl disable relay.service relay.socket relay-admin.socket > /dev/null 2>&1 || true
        fi
        ;;
    purge)
        # dpkg removes the conffile; the drop-ins an operator installed go too. The
        # database stays unless asked: it holds every event relay acknowledged.
        rm -rf /etc/systemd/system/relay.service.d /etc/systemd/system/relay.socket.d
        if [ "${RELAY_PURGE_DATABASE:-}" = yes ]; then
            rm -rf /var/lib/relay /var/lib/private/relay
        fi
        ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload > /dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$P/DEBIAN/postinst" "$P/DEBIAN/prerm" "$P/DEBIAN/postrm"
mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$P" "$OUT/relay_${VERSION}_$ARCH.deb" > /dev/null
echo "$OUT/relay_${VERSION}_$ARCH.deb"
