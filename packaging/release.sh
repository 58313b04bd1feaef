#!/bin/sh
# `make release`: every file of a release in dist/release/<version>/, from a clean tree.
#
#   relay-<v>-linux-x86_64.tar.gz, relay-<v>-linux-aarch64.tar.gz   the executable, units,
#                                                                   example configs, LICENSE,
#                                                                   INSTALL, the installer
#   relay_<v>_amd64.deb, relay_<v>_arm64.deb                        Debian packages (dpkg-deb)
#   webhook_relay-<v>-py3-none-any.whl, webhook_relay-<v>.tar.gz    wheel and sdist (uv build)
#   relay-<v>-sbom-x86_64.cdx.json, relay-<v>-sbom-aarch64.cdx.json what each executable
#                                                                   bundles (CycloneDX)
#   SHA256SUMS                                                      over all of the above
#
# The version is relay/__init__.py's. The aarch64 executable comes from the emulated build
# (packaging/arm64.sh, which needs root); RELEASE_ARCHES=x86_64 builds only the first.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
UV=${UV:-.tools/bin/uv}
ARCHES=${RELEASE_ARCHES:-"x86_64 aarch64"}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' relay/__init__.py)
OUT=$ROOT/dist/release/$VERSION

say() { printf 'release: %s\n' "$*" >&2; }
step=$(date +%s)
took() {  # how long the step since the last call took, for docs/deploy.md's figures
    now=$(date +%s)
    say "  ... $1 in $((now - step)) s"
    step=$now
}

if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && [ -z "${RELEASE_DIRTY:-}" ]; then
    say "the tree has uncommitted changes: a release is built from a clean tree"
    say "(commit them, or RELEASE_DIRTY=1 for a trial build)"
    exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT"
started=$(date +%s)

archive() {  # ARCH EXECUTABLE
    arch=$1
    name=relay-$VERSION-linux-$arch
    stage=$(mktemp -d)
    dir=$stage/$name
    mkdir -p "$dir/packaging" "$dir/systemd"
    install -m 0755 "$2" "$dir/relay"
    cp LICENSE CHANGELOG.md config.example.toml "$dir/"
    cp packaging/install.sh packaging/relay.toml packaging/agent.example.toml \
        packaging/litestream.yml "$dir/packaging/"
    cp systemd/*.service systemd/*.socket systemd/*.conf "$dir/systemd/"
    sed "s/@VERSION@/$VERSION/g; s/@ARCH@/$arch/g" packaging/INSTALL > "$dir/INSTALL"
    # Reproducible archive: sorted names, one owner, the commit's time.
    stamp=$(git log -1 --format=%ct 2>/dev/null || date +%s)
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$stamp" \
        -C "$stage" -cf - "$name" | gzip -9n > "$OUT/$name.tar.gz"
    rm -rf "$stage"
}

for arch in $ARCHES; do
    case $arch in
        x86_64)
            say "x86_64: the executable"
            make -s binary > /dev/null
            exe=dist/relay
            debarch=amd64
            .venv-build/bin/python packaging/sbom.py build/relay \
                "$OUT/relay-$VERSION-sbom-x86_64.cdx.json" "$VERSION" x86_64 > /dev/null
            ;;
        aarch64)
            say "aarch64: the executable, built under emulation (minutes)"
            UV=$UV sh packaging/arm64.sh build > /dev/null
            exe=dist/relay-linux-arm64
            debarch=arm64
            cp dist/relay-linux-arm64.sbom.cdx.json "$OUT/relay-$VERSION-sbom-aarch64.cdx.json"
            ;;
        *) say "unknown architecture $arch"; exit 1 ;;
    esac
    took "$arch executable"
    archive "$arch" "$exe"
    took "$arch archive"
    sh packaging/deb.sh "$VERSION" "$debarch" "$exe" "$OUT" > /dev/null
    took "$debarch Debian package"
done

say "wheel and sdist"
"$UV" build --quiet --out-dir "$OUT" > /dev/null 2>&1
took "wheel and sdist"
rm -f "$OUT/.gitignore"
(cd "$OUT" && sha256sum -- * > SHA256SUMS)
took=$(( $(date +%s) - started ))
say "dist/release/$VERSION/ in ${took}s:"
(cd "$OUT" && ls -l -- * | awk '{printf "  %10d  %s\n", $5, $9}')
