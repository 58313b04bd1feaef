"""A real PostgreSQL for tests: a cluster made with initdb in a temporary folder, listening
only on a Unix socket there, started once per test session and removed after it.

initdb refuses to run as root, so as root it runs as the ``postgres`` system user (Debian's
package creates it). Users other than root run the suite as "root" of a user namespace (see
the Makefile): `make test` starts the session's cluster before entering it and passes its
socket folder in RELAY_TEST_PG, and a test that needs a cluster of its own (to stop and
start it) runs initdb and the server in a nested namespace as the real user again.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PORT = 5433  # only the folder's Unix socket is used; the number names the socket file


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and the server refuse root: as root they run as ``postgres``; as "root" of
    make test's user namespace, in a nested one as the real user again."""
    given = os.environ.get("RELAY_TEST_UID")
    if given is not None:
        gid = pwd.getpwuid(int(given)).pw_gid
        return ["unshare", "--user", f"--map-user={given}", f"--map-group={gid}", *argv]
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start(base: Path) -> Path:
    """initdb in ``base`` and start the server there; return the folder of its socket."""
    bindir = binaries()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL is not installed: `make test` installs it when run as root "
            "(apt-get install postgresql)"
        )
    data, sockets = base / "data", base / "run"
    sockets.mkdir(parents=True, exist_ok=True)
    if _as_postgres(["x"])[0] == "runuser":
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "relay",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    launch(base)
    return sockets


def launch(base: Path) -> None:
    """Start the server of the cluster in ``base`` (made by ``start``) and wait for it."""
    bindir = binaries()
    assert bindir is not None
    options = (
        f"-k {base / 'run'} -c listen_addresses='' -p {PORT} -c fsync=on"
        " -c max_connections=300 -c shared_buffers=64MB"
    )
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(base / "data"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "-l",
                str(base / "postgres.log"),
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )


def halt(base: Path, mode: str = "fast") -> None:
    """Stop the server of the cluster in ``base`` (``pg_ctl stop -m mode``) and wait."""
    bindir = binaries()
    assert bindir is not None
    subprocess.run(
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", mode, "-w", "stop"]),
        check=True,
        capture_output=True,
    )


def can_start() -> bool:
    """Whether this machine can start a cluster of its own (PostgreSQL is installed)."""
    return binaries() is not None


def stop(base: Path) -> None:
    bindir = binaries()
    if bindir is not None:
        subprocess.run(
            _as_postgres(
                [str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", "immediate", "-w", "stop"]
            ),
            check=False,
            capture_output=True,
        )
    shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[Path]:
    """A cluster for the length of the block; yields the folder of its socket."""
    base = Path(tempfile.mkdtemp(prefix="relay-pg-"))
    try:
        yield start(base)
    finally:
        stop(base)


def url(sockets: Path, database: str = "relay") -> str:
    return f"postgresql://relay@/{database}?host={sockets}&port={PORT}"


def create_database(sockets: Path, name: str) -> str:
    """A new, empty database in the cluster; its URL."""
    import psycopg

    with psycopg.connect(url(sockets, "postgres"), autocommit=True, connect_timeout=30) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url(sockets, name)


def wait_ready(sockets: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (sockets / f".s.PGSQL.{PORT}").exists():
            return
        time.sleep(0.05)
    raise RuntimeError(f"no PostgreSQL socket in {sockets}")


if __name__ == "__main__":
    # `python -m tests.postgres start DIR` / `stop DIR`: the Makefile starts the cluster
    # before the suite enters its user namespace (initdb will not run as root there).
    import sys

    command, folder = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        print(start(folder))
    else:
        stop(folder)
