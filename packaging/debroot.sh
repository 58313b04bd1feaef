#!/bin/sh
# A clean Debian bookworm root file system for trying the release's packages in
# (tests/test_release.py), cached in .cache/debroot/<arch>/ (built once):
#
#   sh packaging/debroot.sh amd64|arm64     # prints its path
#
# amd64 with debootstrap; arm64 the same, then its second stage under qemu through
# binfmt_misc (as packaging/arm64.sh does). Needs root, debootstrap (and for arm64
# qemu-user-static with binfmt-support), which `make release` installs.
set -eu
cd "$(dirname "$0")/.."
ARCH=$1
FS=$(pwd)/.cache/debroot/$ARCH
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What a machine that runs relay has: systemd (its units are checked there) and procps.
INCLUDE=systemd,procps
if [ "$(cat "$FS/.relay-ready" 2>/dev/null)" = "$INCLUDE" ]; then
    echo "$FS"
    exit 0
fi
rm -rf "$FS"
mkdir -p "$(dirname "$FS")"
if [ "$ARCH" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
    debootstrap --foreign --arch=arm64 --variant=minbase --include=$INCLUDE bookworm "$FS" \
        "$MIRROR" >&2
    mkdir -p "$FS/usr/libexec/qemu-binfmt"
    cp /usr/bin/qemu-aarch64-static "$FS/usr/bin/"
    ln -sf ../../bin/qemu-aarch64-static "$FS/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$FS" /debootstrap/debootstrap \
        --second-stage >&2
else
    debootstrap --arch="$ARCH" --variant=minbase --include=$INCLUDE bookworm "$FS" "$MIRROR" >&2
fi
echo "$INCLUDE" > "$FS/.relay-ready"
echo "$FS"
