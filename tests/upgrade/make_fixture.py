"""Write the upgrade fixtures of one released version, with that version's own code.

    git worktree add /tmp/relay-0.1.0 v0.1.0      # the release's tag (0.1.0: 0b278bc)
    (cd /tmp/relay-0.1.0 && UV_PROJECT_ENVIRONMENT=.venv uv sync --locked)  # its own deps
    /tmp/relay-0.1.0/.venv/bin/python tests/upgrade/make_fixture.py /tmp/relay-0.1.0 0.1.0 \
        [--pg SOCKETS_FOLDER]                  # python -m tests.postgres start DIR makes one

It runs ``python -m relay serve`` from that checkout, with that version's own locked
dependencies, against a fresh SQLite file, drives it over HTTP as a provider and an
operator would, and leaves a database with rows in every state:

- delivered (destination ``ok``), dead (``bad`` answers 422), replayed (a dead delivery
  replayed through the admin API, which died again: an audit row), pending (``held`` is
  paused in the config), leased (``slow`` hangs, and relay is SIGKILLed mid-attempt);
- an unrouted event (a type no route takes), a duplicate (the same key twice), a WhatsApp
  batch normalized into items (statuses, one of them stale);
- rejections (a bad signature), and the per-minute rollup.

Then it writes ``relay-VERSION.db`` (checkpointed into one file) and ``relay-VERSION.json``:
what the database held, for the test to compare after today's relay has migrated it. With
``--pg``, the same story runs on a PostgreSQL database of that cluster and is dumped to
``relay-VERSION.pg.sql`` (plain SQL, restored with psql).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HERE = Path(__file__).resolve().parent
SECRET = "upgrade-secret"
TOKEN = "upgrade-admin-token"


def config(folder: Path, storage: str, port: int, admin: int, receivers: dict[str, str]) -> Path:
    path = folder / "relay.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
shutdown_grace = "1s"
[storage]
{storage}
lease_margin = "1s"
[admin]
listen = "127.0.0.1:{admin}"
token = "{TOKEN}"
[[sources]]
name = "demo"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
idempotency_key = "header:X-Request-Id"
event_type = "json:/type"
[[sources]]
name = "wa"
verify = "none"
normalize = "whatsapp"
[[destinations]]
name = "ok"
url = "{receivers["ok"]}"
[[destinations]]
name = "bad"
url = "{receivers["bad"]}"
[destinations.retry]
max_attempts = 1
[[destinations]]
name = "held"
url = "{receivers["ok"]}"
paused = true
[[destinations]]
name = "slow"
url = "{receivers["slow"]}"
timeout = "30s"
[[routes]]
source = "demo"
destinations = ["ok", "bad", "held"]
types = ["invoice.*"]
[[routes]]
source = "demo"
destinations = ["slow"]
types = ["slow.*"]
[[routes]]
source = "wa"
destinations = ["ok"]
"""
    )
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def receivers() -> tuple[web.AppRunner, dict[str, str], list[str]]:
    arrived: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        arrived.append(request.headers.get("X-Relay-Event-Id", ""))
        return web.Response(text="ok")

    async def bad(request: web.Request) -> web.Response:
        return web.Response(status=422, text="rejected by the test receiver")

    async def slow(request: web.Request) -> web.Response:
        arrived.append("slow")
        await asyncio.sleep(3600)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/bad", bad)
    app.router.add_post("/slow", slow)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    urls = {name: f"http://127.0.0.1:{port}/{name}" for name in ("ok", "bad", "slow")}
    return runner, urls, arrived


def whatsapp(n: int) -> bytes:
    statuses = [
        {"id": f"wamid.{n}", "status": s, "timestamp": str(1764400000 + i), "recipient_id": "31"}
        for i, s in enumerate(["sent", "read", "delivered"])  # delivered after read: stale
    ]
    body = {"entry": [{"changes": [{"value": {"statuses": statuses}}]}]}
    return json.dumps(body).encode()


async def story(tree: Path, folder: Path, storage: str) -> None:
    runner, urls, arrived = await receivers()
    port, admin = free_port(), free_port()
    path = config(folder, storage, port, admin, urls)
    log = (folder / "relay.log").open("ab")
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "--config", str(path)],
        cwd=tree,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: the kill below reaches all of it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, proc)

            async def send(
                body: bytes, key: str | None, source: str = "demo", sig: str = ""
            ) -> int:
                headers = {"Content-Type": "application/json"}
                if source == "demo":
                    headers["X-Signature"] = sig or (
                        "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                    )
                if key is not None:
                    headers["X-Request-Id"] = key
                async with session.post(f"{base}/in/{source}", data=body, headers=headers) as r:
                    await r.read()
                    return r.status

            for i in range(5):
                assert await send(b'{"type": "invoice.paid", "n": %d}' % i, f"inv-{i}") == 200
            assert await send(b'{"type": "invoice.paid", "n": 0}', "inv-0") == 200  # duplicate
            assert await send(b'{"type": "other.thing"}', "unrouted-1") == 200
            assert await send(b'{"type": "invoice.paid"}', "x", sig="sha256=00") == 401
            assert await send(whatsapp(1), None, source="wa") == 200
            await until(lambda: len([a for a in arrived if a != "slow"]) >= 5 + 1)
            headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "upgrade-replay-1"}
            async with session.post(
                f"http://127.0.0.1:{admin}/api/replay",
                json={"filter": {}, "destination": "bad"},
                headers=headers,
            ) as r:
                assert r.status == 200, await r.text()
            assert await send(b'{"type": "slow.one"}', "slow-1") == 200
            await until(lambda: "slow" in arrived)  # leased, in flight
            await asyncio.sleep(0.5)  # the replays die at bad meanwhile (it answers 422)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # mid-attempt: the slow delivery stays leased
        proc.wait()
        log.close()
        await runner.cleanup()


async def wait_ready(
    session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]
) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError("relay exited; see relay.log")
        try:
            async with session.get(base + "/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("relay not ready")


async def until(check: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.05)


def summary(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    return {name: [list(r) for r in found] for name, found in rows.items()}


QUERIES = {
    # What must mean the same after an upgrade: by stable keys, not by rowids.
    "events": "SELECT id, source, idempotency_key, event_type, parent_id FROM events ORDER BY id",
    "deliveries": (
        "SELECT e.idempotency_key, d.event_id, d.destination, d.state, d.attempts,"
        " d.lease_until IS NOT NULL, d.replay_of IS NOT NULL FROM deliveries d"
        " JOIN events e ON e.id = d.event_id ORDER BY d.id"
    ),
    "audit": "SELECT action, target FROM audit ORDER BY id",
    "rejections": "SELECT source, status FROM rejections ORDER BY id",
}


def sqlite_fixture(tree: Path, version: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "relay.db"
        asyncio.run(story(tree, folder, f'path = "{db}"'))
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            found = {name: list(conn.execute(q)) for name, q in QUERIES.items()}
            found["user_version"] = [(conn.execute("PRAGMA user_version").fetchone()[0],)]
        conn.close()
        shutil.copy(db, HERE / f"relay-{version}.db")
        (HERE / f"relay-{version}.json").write_text(json.dumps(summary(found), indent=1) + "\n")


def pg_fixture(tree: Path, version: str, sockets: Path) -> None:
    sys.path.insert(0, str(HERE.parent.parent))
    from tests import postgres

    name = f"upgrade_{version.replace('.', '_')}"
    url = postgres.create_database(sockets, name)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(story(tree, Path(tmp), f'url = "{url}"'))
    bindir = postgres.binaries()
    assert bindir is not None
    dump = subprocess.run(
        [str(bindir / "pg_dump"), "--no-owner", "--no-privileges", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (HERE / f"relay-{version}.pg.sql").write_text(dump)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", type=Path, help="a checkout of the released version")
    parser.add_argument("version")
    parser.add_argument("--pg", type=Path, help="the socket folder of a PostgreSQL cluster")
    args = parser.parse_args()
    sqlite_fixture(args.tree.resolve(), args.version)
    if args.pg is not None:
        pg_fixture(args.tree.resolve(), args.version, args.pg)


if __name__ == "__main__":
    main()
