#!/bin/sh
# The arm64 (aarch64) executable, built on an x86_64 machine by emulation:
#
#   sh packaging/arm64.sh build    # -> dist/relay-linux-arm64
#   sh packaging/arm64.sh run ARGS # run dist/relay-linux-arm64 under qemu
#
# PyInstaller must run on the architecture it builds for, so it runs inside a Debian
# bookworm arm64 root file system (debootstrap), under qemu user emulation through the
# kernel's binfmt_misc, with the locked dependencies' aarch64 wheels from PyPI. The root
# file system and its venv are cached in .cache/arm64/ (a second build skips them).
# Needs root (debootstrap, chroot) and Debian's qemu-user-static, debootstrap and
# binfmt-support, which `make binary-arm64` installs.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=$ROOT/.cache/arm64
FS=$CACHE/rootfs
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
UV=${UV:-.tools/bin/uv}

say() { printf 'arm64: %s\n' "$*" >&2; }

# Commands in the arm64 tree get a clean environment: this machine's PIP_*, SSL_* and
# REQUESTS_* variables name files that mean something else inside it.
inside() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        SSL_CERT_FILE=/build/ca.crt PIP_CERT=/build/ca.crt chroot "$FS" "$@"
}

binfmt() {
    # qemu runs aarch64 programs for the kernel once binfmt_misc knows it.
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || {
            say "the kernel refused to mount binfmt_misc: chroot into the arm64 tree cannot"
            say "run its programs. Needs root and a kernel with CONFIG_BINFMT_MISC."
            exit 1
        }
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || {
        say "qemu-aarch64 is not registered with binfmt_misc (apt-get install qemu-user-static"
        say "binfmt-support)"
        exit 1
    }
}

# What PyInstaller needs in the tree: Python with its shared library, venv, objdump.
PACKAGES="python3 python3-venv libpython3.11 binutils ca-certificates"

rootfs() {
    if [ -e "$FS/.relay-ready" ]; then
        [ "$(cat "$FS/.relay-ready")" = "$PACKAGES" ] && return
        say "adding packages to the cached tree: $PACKAGES"
        inside apt-get update -qq
        inside env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES
        echo "$PACKAGES" > "$FS/.relay-ready"
        return
    fi
    say "debootstrap bookworm arm64 into $FS (once; cached)"
    rm -rf "$FS"
    mkdir -p "$CACHE"
    debootstrap --foreign --arch=arm64 --variant=minbase \
        --include="$(echo "$PACKAGES" | tr ' ' ',')" bookworm "$FS" "$MIRROR"
    # The binfmt entry names its interpreter by path, which chroot resolves inside $FS.
    mkdir -p "$FS/usr/libexec/qemu-binfmt"
    cp /usr/bin/qemu-aarch64-static "$FS/usr/bin/"
    ln -sf ../../bin/qemu-aarch64-static "$FS/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$FS" /debootstrap/debootstrap --second-stage
    echo "$PACKAGES" > "$FS/.relay-ready"
}

venv() {
    # The locked runtime and build dependencies, as aarch64 wheels, hashes checked.
    "$UV" export --locked --no-dev --group build --no-emit-project --format requirements.txt \
        > "$CACHE/requirements.txt"
    if cmp -s "$CACHE/requirements.txt" "$FS/build/requirements.txt" 2>/dev/null; then
        return
    fi
    say "installing the locked dependencies into the arm64 venv"
    cp /etc/resolv.conf "$FS/etc/resolv.conf"
    rm -rf "$FS/build/venv"
    mkdir -p "$FS/build"
    # This machine's trust (a proxy between it and PyPI may sign with its own CA).
    cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$FS/build/ca.crt"
    inside python3 -m venv /build/venv
    cp "$CACHE/requirements.txt" "$FS/build/requirements.in"
    inside /build/venv/bin/pip install --quiet --disable-pip-version-check \
        --cert /build/ca.crt --only-binary=:all: --require-hashes -r /build/requirements.in
    cp "$CACHE/requirements.txt" "$FS/build/requirements.txt"
}

build() {
    binfmt
    rootfs
    venv
    say "PyInstaller under emulation"
    rm -rf "$FS/build/src" "$FS/build/dist"
    mkdir -p "$FS/build/src"
    git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$FS/build/src"
    git rev-parse --short HEAD > "$FS/build/src/relay/_commit.txt" 2>/dev/null \
        || echo unknown > "$FS/build/src/relay/_commit.txt"
    inside sh -c 'cd /build/src/packaging && /build/venv/bin/pyinstaller --noconfirm \
        --clean --log-level WARN --distpath /build/dist --workpath /build/work relay.spec'
    # What it bundles, traced by the build's own interpreter (packaging/sbom.py).
    version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' relay/__init__.py)
    inside /build/venv/bin/python /build/src/packaging/sbom.py /build/work/relay \
        /build/dist/sbom.cdx.json "$version" aarch64 > /dev/null
    mkdir -p dist
    cp "$FS/build/dist/relay" dist/relay-linux-arm64
    cp "$FS/build/dist/sbom.cdx.json" dist/relay-linux-arm64.sbom.cdx.json
    ls -l dist/relay-linux-arm64
}

# Whether this machine can build at all (CI asks before it tries): root, and a kernel that
# lets qemu run arm64 programs. Says why not, and exits 1, when it cannot.
can() {
    if [ "$(id -u)" != 0 ]; then
        say "needs root (debootstrap, chroot, binfmt_misc)"
        exit 1
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/register ] \
        && ! mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null; then
        say "this kernel does not let binfmt_misc be mounted"
        exit 1
    fi
}

case "${1:-}" in
    build) build ;;
    can) can ;;
    run)
        shift
        # The one-file executable starts itself again through binfmt_misc: qemu finds the
        # arm64 loader and libc through QEMU_LD_PREFIX there, not through -L.
        QEMU_LD_PREFIX=$FS exec qemu-aarch64-static "$ROOT/dist/relay-linux-arm64" "$@"
        ;;
    *)
        echo "usage: sh packaging/arm64.sh build | can | run ARGS" >&2
        exit 2
        ;;
esac
