"""The single executable built by `make binary`: a real round trip, then a clean stop.

Skipped when dist/relay has not been built (`make binary`); CI builds it first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Receiver, post, query, wait_for
from tests.process import READY, write_config

BINARY = Path(
    os.environ.get("RELAY_TEST_BINARY", Path(__file__).resolve().parent.parent / "dist" / "relay")
)


@pytest.fixture(autouse=True)
def _built() -> None:
    """`make test` builds the executable first: a missing one is a broken setup, said as a
    failure, not passed over."""
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is not built: run `make binary` (make test does)")


def test_binary_version_uses_the_c_parser() -> None:
    out = subprocess.run([str(BINARY), "version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "SQLite 3." in out.stdout
    assert "C parser" in out.stdout, out.stdout


async def smoke(
    argv: list[str],
    tmp_path: Path,
    receiver: Receiver,
    client: aiohttp.ClientSession,
    env: dict[str, str] | None = None,
    patience: float = 1.0,
) -> None:
    """The executable ``argv`` (then ``serve --config …``): a signed event received,
    committed, delivered; SIGTERM exits 0. ``patience`` stretches the waits (emulation)."""
    db = tmp_path / "relay.db"
    config = write_config(tmp_path / "relay.toml", db, receiver.url)
    log = tmp_path / "relay.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*argv, "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        await wait_for(lambda: READY.search(log.read_text()) is not None, timeout=30 * patience)
        match = READY.search(log.read_text())
        assert match is not None
        port = int(match.group(1).rsplit(":", 1)[1])
        body = json.dumps({"type": "binary.smoke"}).encode()
        status, _, answer = await post(client, port, body)
        assert status == 200
        await wait_for(lambda: len(receiver.received) == 1, timeout=10 * patience)
        assert receiver.received[0].body == body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30 * patience) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert query(db, "SELECT state FROM deliveries") == [("delivered",)]
    assert answer["id"] == receiver.received[0].headers["X-Relay-Event-Id"]


async def test_binary_round_trip_and_clean_stop(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    await smoke([str(BINARY)], tmp_path, receiver, client)


async def test_binary_on_postgresql(
    tmp_path: Path, pg_url: str, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """The executable carries the PostgreSQL driver (psycopg with its own libpq)."""
    from tests.test_cluster import cluster_config, sql

    config = cluster_config(tmp_path / "relay.toml", pg_url, receiver.url)
    log = tmp_path / "relay.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        await wait_for(lambda: READY.search(log.read_text()) is not None, timeout=30)
        match = READY.search(log.read_text())
        assert match is not None
        port = int(match.group(1).rsplit(":", 1)[1])
        status, _, _ = await post(client, port, b'{"type": "binary.pg"}', key="k1")
        assert status == 200
        await wait_for(lambda: len(receiver.received) == 1, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sql(pg_url, "SELECT state FROM deliveries") == [("delivered",)]


async def test_binary_serves_https_from_certificate_files(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The TLS modules are imported only when `[server.tls]` is set: the executable must
    still carry them."""
    from tests.certs import make_ca, make_leaf
    from tests.pebble import DOMAIN, free_port
    from tests.test_https import https_config, post_https, trusting

    ca = make_ca(tmp_path, "binary CA")
    cert, key = make_leaf(tmp_path, [DOMAIN], ca, "served")
    port = free_port()
    tls = f'cert_file = "{cert}"\nkey_file = "{key}"\n'
    config = https_config(tmp_path / "relay.toml", receiver.url, port, tls)
    log = tmp_path / "relay.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        await wait_for(lambda: READY.search(log.read_text()) is not None, timeout=30)
        async with aiohttp.ClientSession() as session:
            status, _ = await post_https(port, trusting(ca[0]), b"{}", "k1", session)
        assert status == 200
        await wait_for(lambda: len(receiver.received) == 1, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _child(launcher: int) -> int:
    """The one-file executable's child: relay itself."""
    for _ in range(500):  # bounded: it forks within a few milliseconds of the start
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise AssertionError("the launcher started no child")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_sigkill_to_the_started_pid_stops_relay_and_leaves_no_unpacked_copy(
    tmp_path: Path,
) -> None:
    """Issue 29: `kill -9` on the pid a user started killed only PyInstaller's launcher;
    relay (its child) kept the port and the database lock, and its unpacked folder stayed in
    $TMPDIR. Now the child follows within a second and removes its folder; a folder left by
    a launcher and child both killed is removed at the next start."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/")
    log = tmp_path / "relay.log"

    def start() -> subprocess.Popen[bytes]:
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(BINARY), "serve", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while READY.search(log.read_bytes()[offset:].decode()) is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        return proc

    launcher = start()
    child = _child(launcher.pid)
    assert len(list(scratch.glob("_MEI*"))) == 1
    launcher.kill()  # SIGKILL to the pid that was started, only that one
    launcher.wait()
    killed = time.monotonic()
    while _alive(child) and time.monotonic() - killed < 5:
        time.sleep(0.02)
    stopped = time.monotonic() - killed
    assert not _alive(child), "relay outlived its launcher"
    assert stopped < 1.0, f"relay stopped {stopped:.2f}s after its launcher"
    assert list(scratch.glob("_MEI*")) == []

    # Launcher and child both killed (a process group): their folder stays, until the next
    # start clears it.
    launcher = start()
    child = _child(launcher.pid)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    while _alive(child) and time.monotonic() - killed < 30:
        time.sleep(0.02)
    assert len(list(scratch.glob("_MEI*"))) == 1
    launcher = start()
    try:
        assert len(list(scratch.glob("_MEI*"))) == 1  # its own only
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert list(scratch.glob("_MEI*")) == []
