"""The release's files (`make release`, issue 32), tried as a person who downloads them:
every file there and its checksum right; the SBOM generated and complete; the archive's
installer; the wheel in a fresh venv (with the PostgreSQL extra, on a real server); and the
Debian packages in clean Debian bookworm roots (amd64 natively, arm64 under qemu):
installed, `relay version` and `relay check-config` work, an older package upgraded keeps
the edited config and the database (migrated, events there), and `dpkg -r` keeps the
database.

Skipped until `make release` has built dist/release/<version>/ (CI runs `make
test-release`, which builds it first).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import __version__

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "dist" / "release" / __version__
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}

# These test files make test-release builds; make test leaves them out (-m "not release").
pytestmark = pytest.mark.release


@pytest.fixture(autouse=True)
def release_built() -> None:
    if not (OUT / "SHA256SUMS").exists():
        pytest.fail(f"no release built in dist/release/{__version__}/: run make test-release")


# The architectures the release was asked for: packaging/release.sh's default, or the
# RELEASE_ARCHES that built it (make test-release passes it on). A file missing for one of
# them is a broken release, and fails.
ASKED = os.environ.get("RELEASE_ARCHES", "x86_64 aarch64").split()


def built() -> list[str]:
    return [a for a in ARCHES if a in ASKED]


def test_every_file_is_there_and_its_checksum_holds() -> None:
    v = __version__
    expected = {"SHA256SUMS", f"webhook_relay-{v}-py3-none-any.whl", f"webhook_relay-{v}.tar.gz"}
    for arch in built():
        expected |= {
            f"relay-{v}-linux-{arch}.tar.gz",
            f"relay_{v}_{ARCHES[arch]}.deb",
            f"relay-{v}-sbom-{arch}.cdx.json",
        }
    assert set(os.listdir(OUT)) == expected
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=OUT, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(expected) - 1


@pytest.mark.parametrize("arch", built())
def test_the_sbom_lists_what_the_executable_bundles(arch: str) -> None:
    sbom = json.loads((OUT / f"relay-{__version__}-sbom-{arch}.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["metadata"]["component"]["version"] == __version__
    names = {c["name"].lower(): c for c in sbom["components"]}
    for needed in ("aiohttp", "pydantic", "uvloop", "cryptography", "jinja2", "cpython"):
        assert needed in names, needed
        assert names[needed]["version"]
    assert names["aiohttp"]["licenses"]
    assert not {"pytest", "mypy", "hypothesis"} & set(names)  # nothing of the dev venv


@pytest.mark.parametrize("arch", built())
def test_the_debian_package_says_what_changed_in_this_version(arch: str) -> None:
    deb = OUT / f"relay_{__version__}_{ARCHES[arch]}.deb"
    files = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True, timeout=60
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(files)) as tree:
        member = tree.extractfile("./usr/share/doc/relay/changelog.gz")
        assert member is not None
        changelog = gzip.decompress(member.read()).decode()
    # The entry carries CHANGELOG.md's items for this version, not a placeholder.
    section = (ROOT / "CHANGELOG.md").read_text().split(f"## {__version__}", 1)[1]
    first_item = next(line for line in section.splitlines() if line.startswith("- "))
    assert changelog.startswith(f"relay ({__version__}) stable;")
    assert " ".join(first_item[2:].split()[:4]) in " ".join(changelog.split())


def test_the_archive_installs_with_its_own_installer(tmp_path: Path) -> None:
    arch = "x86_64"
    with tarfile.open(OUT / f"relay-{__version__}-linux-{arch}.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    folder = tmp_path / f"relay-{__version__}-linux-{arch}"
    for name in ("relay", "LICENSE", "INSTALL", "packaging/install.sh", "systemd/relay.socket"):
        assert (folder / name).exists(), name
    assert __version__ in (folder / "INSTALL").read_text()
    root = tmp_path / "root"
    done = subprocess.run(
        ["sh", str(folder / "packaging" / "install.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RELAY_INSTALL_ROOT": str(root)},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    installed = root / "usr" / "local" / "bin" / "relay"
    assert installed.read_bytes() == (folder / "relay").read_bytes()
    version = subprocess.run(
        [str(installed), "version"], capture_output=True, text=True, timeout=60
    )
    assert version.stdout.startswith(f"relay {__version__} "), version.stdout


def test_the_wheel_installs_in_a_fresh_venv_with_and_without_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    wheel = OUT / f"webhook_relay-{__version__}-py3-none-any.whl"
    uv = ROOT / ".tools" / "bin" / "uv"
    for extra, venv in (("", tmp_path / "plain"), ("[postgresql]", tmp_path / "pg")):
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        subprocess.run(
            [
                str(uv),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                f"{wheel}{extra}",
            ],
            check=True,
            timeout=300,
        )
        out = subprocess.run(
            [str(venv / "bin" / "relay"), "version"], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.startswith(f"relay {__version__} "), out.stdout + out.stderr
    config = tmp_path / "pg.toml"
    port = _free_port()
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\nurl = "{pg_url}"\n'
        '[[sources]]\nname = "demo"\nverify = "none"\n'
    )
    plain = subprocess.run(
        [str(tmp_path / "plain" / "bin" / "relay"), "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 1
    assert "pip install 'webhook-relay[postgresql]'" in plain.stderr
    relay = subprocess.Popen(
        [str(tmp_path / "pg" / "bin" / "relay"), "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert _ready(port), "relay on PostgreSQL from the wheel did not start"
    finally:
        relay.terminate()
        relay.wait(timeout=30)
        if relay.stdout is not None:
            relay.stdout.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(port: int, within: float = 30.0) -> bool:
    import urllib.request

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


# -- the Debian packages, in clean roots ---------------------------------------------------


@pytest.fixture
def debian(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A throwaway copy of a clean bookworm root of the architecture, /proc mounted."""
    arch = request.param
    if os.geteuid() != 0 or "RELAY_TEST_UID" in os.environ:
        # Only root may chroot and mount /proc (CI's make test-release runs as root).
        pytest.fail("installing a .deb in a Debian root needs root: run sudo make test-release")
    clean = subprocess.run(
        ["sh", str(ROOT / "packaging" / "debroot.sh"), ARCHES[arch]],
        capture_output=True,
        text=True,
        timeout=1200,
        check=True,
    ).stdout.strip()
    tree = tmp_path / "root"
    subprocess.run(["cp", "-a", clean, str(tree)], check=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(tree / "proc")], check=True)
    try:
        yield tree, arch
    finally:
        subprocess.run(["umount", "-l", str(tree / "proc")], check=False)


def inside(tree: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    return subprocess.run(
        ["chroot", str(tree), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=check,
    )


def older_package(tmp_path: Path, arch: str) -> Path:
    """The same executable packaged as an older version (0.1.99), as the test's upgrade
    starting point."""
    exe = ROOT / "dist" / ("relay" if arch == "x86_64" else "relay-linux-arm64")
    out = tmp_path / "older"
    subprocess.run(
        ["sh", str(ROOT / "packaging" / "deb.sh"), "0.1.99", ARCHES[arch], str(exe), str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out / f"relay_0.1.99_{ARCHES[arch]}.deb"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("debian", built(), indirect=True)
def test_the_debian_package_installs_upgrades_and_keeps_the_database(
    debian: tuple[Path, str], tmp_path: Path
) -> None:
    tree, arch = debian
    assert inside(tree, "dpkg", "--print-architecture").stdout.strip() == ARCHES[arch]
    new = OUT / f"relay_{__version__}_{ARCHES[arch]}.deb"
    old = older_package(tmp_path, arch)
    shutil.copy(old, tree / "old.deb")
    shutil.copy(new, tree / "new.deb")

    inside(tree, "dpkg", "-i", "/old.deb")
    assert inside(tree, "relay", "version").stdout.startswith(f"relay {__version__} ")
    config = tree / "etc" / "relay" / "relay.toml"
    assert "@ADMIN_TOKEN@" not in config.read_text()  # a random token, written once
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    checked = inside(tree, "relay", "check-config", "/etc/relay/relay.toml", check=False)
    assert checked.returncode == 0, checked.stderr
    units = ("relay.service", "relay.socket", "relay-admin.socket", "relay-agent.service")
    for unit in units:
        assert (tree / "lib/systemd/system" / unit).exists(), unit
    verify = subprocess.run(
        [
            "systemd-analyze",
            f"--root={tree}",
            "verify",
            "--man=no",
            "/lib/systemd/system/relay.socket",
            "/lib/systemd/system/relay-admin.socket",
            "/lib/systemd/system/relay.service",
            "/lib/systemd/system/relay-agent.service",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert verify.returncode == 0, verify.stderr

    # The operator edits the config and relay stores events in its database.
    edited = config.read_text() + "\n# edited by the operator\n"
    config.write_text(edited)
    db = tree / "var" / "lib" / "relay" / "relay.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    events = _store_events(tree, 3)

    inside(tree, "dpkg", "-i", "--force-confold", "/new.deb")  # the upgrade
    assert config.read_text() == edited  # the edited conffile is kept
    status = inside(tree, "dpkg-query", "-W", "-f=${Version}", "relay").stdout
    assert status == __version__
    assert _store_events(tree, 1)  # the new relay opens (and migrates) it and adds to it
    with sqlite3.connect(db) as conn:
        kept = {row[0] for row in conn.execute("SELECT id FROM events")}
    conn.close()
    assert set(events) <= kept

    inside(tree, "dpkg", "-r", "relay")
    assert not (tree / "usr" / "bin" / "relay").exists()
    assert db.exists()  # removing keeps the database
    inside(tree, "dpkg", "--purge", "relay")
    assert not config.exists()  # purging removes the config …
    assert db.exists()  # … and still keeps the database, unless asked


def _store_events(tree: Path, count: int) -> list[str]:
    """Start the installed relay in the root on a free port and post ``count`` events
    (to a source added for the test): their ids, once committed."""
    import hashlib
    import hmac
    import urllib.request

    port = _free_port()
    config = tree / "tmp" / "store.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\npath = "/var/lib/relay/relay.db"\n'
        '[[sources]]\nname = "demo"\nverify = "hmac"\nsecret = "s"\nprefix = "sha256="\n'
    )
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        ["chroot", str(tree), "relay", "serve", "--config", "/tmp/store.toml"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    ids = []
    try:
        assert _ready(port, within=120), "the installed relay did not start"
        for i in range(count):
            body = json.dumps({"n": i, "at": time.time()}).encode()
            sig = "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/in/demo",
                data=body,
                method="POST",
                headers={"X-Signature": sig, "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - http
                ids.append(json.loads(answer.read())["id"])
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return ids
