"""Retention under load: does pruning 200,000 old events disturb ingest latency?

Builds a database with N old events (30 days old, delivered, one attempt each), then runs
relay on a copy of it twice per round, interleaved: once with retention on (it starts
pruning at once, in batches) and once with it off, each time under the same open-loop load
(fixed rate, signed bodies, one destination on 127.0.0.1). Reports ack p50/p99 per run,
medians per mode, and how long pruning took. Only 127.0.0.1.

Usage: python bench/prune.py [--events 200000] [--rate 200] [--seconds 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.store.sqlite import migrate  # noqa: E402 - after the path tweak

SECRET = "prune-secret"
BODY = json.dumps(
    {"id": "evt", "type": "invoice.paid", "data": {"amount": 4200}} | {"pad": "x" * 1400}
)


def build(path: Path, count: int) -> None:
    """N events received 30 days ago, each delivered once with one attempt."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        migrate(db, path)
        old = time.time() - 30 * 86400
        headers = json.dumps([["Content-Type", "application/json"]])
        body = BODY.encode()
        db.execute("BEGIN")
        for start in range(0, count, 10_000):
            n = min(10_000, count - start)
            db.executemany(
                "INSERT INTO events (id, source, received_at, idempotency_key, event_type,"
                " content_type, remote_addr, headers, body) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        f"evt_old{start + i:020d}",
                        "demo",
                        old + (start + i) * 0.001,
                        None,
                        "invoice.paid",
                        "application/json",
                        "127.0.0.1",
                        headers,
                        body,
                    )
                    for i in range(n)
                ],
            )
        db.execute(
            "INSERT INTO deliveries (event_id, destination, state, attempts, next_attempt_at,"
            " created_at, updated_at, delivered_at, last_status)"
            " SELECT id, 'app', 'delivered', 1, received_at, received_at, received_at,"
            " received_at, 200 FROM events"
        )
        db.execute(
            "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status, outcome)"
            " SELECT id, 1, created_at, 1.0, 200, 'delivered' FROM deliveries"
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def config(directory: Path, db: Path, receiver: int, pruning: bool) -> Path:
    retention = '[retention]\ndelivered_after = "7d"\ninterval = "1h"\n' if pruning else ""
    path = directory / f"relay-{'prune' if pruning else 'plain'}.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:18411"
max_connections_per_address = 1000  # the load generator is one address
[storage]
path = "{db}"
[log]
level = "warning"
{retention}
[[sources]]
name = "demo"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
[[destinations]]
name = "app"
url = "http://127.0.0.1:{receiver}/hook"
[[routes]]
source = "demo"
destinations = ["app"]
"""
    )
    return path


async def receiver() -> tuple[web.AppRunner, int]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def load(rate: float, seconds: float) -> list[float]:
    """Open loop: request i starts at i/rate whatever came before; returns ack latencies."""
    body = BODY.encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Signature": signature, "Content-Type": "application/json"}
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:

        async def one() -> None:
            started = time.perf_counter()
            async with session.post(
                "http://127.0.0.1:18411/in/demo", data=body, headers=headers
            ) as r:
                await r.read()
                if r.status == 200:
                    latencies.append(time.perf_counter() - started)

        tasks = []
        begin = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies


def remaining(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM events WHERE id LIKE 'evt_old%'").fetchone()[0]
        )


def fresh_copy(template: Path, db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    shutil.copy(template, db)


async def run_once(
    template: Path, directory: Path, pruning: bool, rate: float, seconds: float, port: int
) -> dict[str, float]:
    db = directory / f"run-{'prune' if pruning else 'plain'}.db"
    fresh_copy(template, db)
    cfg = config(directory, db, port, pruning)
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "--config", str(cfg)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with contextlib.closing(
                    __import__("socket").create_connection(("127.0.0.1", 18411), 0.2)
                ):
                    break
            except OSError:
                await asyncio.sleep(0.05)
        started = time.monotonic()
        latencies = await load(rate, seconds)
        left = remaining(db)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    latencies.sort()
    return {
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "acked": len(latencies),
        "old_left": left,
        "seconds": time.monotonic() - started,
    }


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        template = directory / "template.db"
        t0 = time.monotonic()
        build(template, args.events)
        print(
            f"built {args.events} old events in {time.monotonic() - t0:.1f}s "
            f"({template.stat().st_size / 1e6:.0f} MB)"
        )
        runner, port = await receiver()
        results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        try:
            for round_ in range(args.rounds):
                for pruning in (False, True):
                    r = await run_once(template, directory, pruning, args.rate, args.seconds, port)
                    results[pruning].append(r)
                    mode = "pruning" if pruning else "no pruning"
                    print(
                        f"round {round_ + 1} {mode:10}: p50 {r['p50_ms']:.2f} ms, "
                        f"p99 {r['p99_ms']:.2f} ms, acked {r['acked']}, "
                        f"old events left {r['old_left']}"
                    )
        finally:
            await runner.cleanup()
    plain = statistics.median(r["p99_ms"] for r in results[False])
    pruned = statistics.median(r["p99_ms"] for r in results[True])
    print(
        f"\nmedian p99: no pruning {plain:.2f} ms, pruning {pruned:.2f} ms, "
        f"ratio {pruned / plain:.2f}"
    )
    print(
        f"median p50: no pruning {statistics.median(r['p50_ms'] for r in results[False]):.2f} ms, "
        f"pruning {statistics.median(r['p50_ms'] for r in results[True]):.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
