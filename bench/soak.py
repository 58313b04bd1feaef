"""Soak: a steady load for a bounded time; memory, file descriptors and latency must stay flat.

relay runs as a subprocess on the example's shape (HMAC source, one destination); the
receiver here fails 10% of deliveries with 503 so retries run all the time. The load is
open loop: requests start on a fixed schedule whatever the answers, so a slow relay shows
as latency rather than as less load. Every minute: RSS and open fds of the relay process,
ack latency p50/p99, and the delivery backlog. Only 127.0.0.1.

Usage: python bench/soak.py [--minutes 10] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

SECRET = "soak-secret"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def start_receiver(fail_ratio: float) -> tuple[web.AppRunner, int]:
    rng = random.Random(7)

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503 if rng.random() < fail_ratio else 200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def write_config(directory: Path, receiver_port: int) -> Path:
    path = directory / "relay.toml"
    path.write_text(f"""
[server]
listen = "127.0.0.1:18090"
max_connections_per_address = 1000  # the load generator is one address
[storage]
path = "{directory}/relay.db"
[log]
level = "warning"
[[sources]]
name = "soak"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
idempotency_key = "json:/id"
[[destinations]]
name = "app"
url = "http://127.0.0.1:{receiver_port}/hook"
[destinations.retry]
base = "200ms"
cap = "2s"
[[routes]]
source = "soak"
destinations = ["app"]
""")
    return path


async def main(minutes: float, rate: float) -> int:
    receiver, receiver_port = await start_receiver(0.10)
    tmp = Path(tempfile.mkdtemp(prefix="relay-soak-"))
    config = write_config(tmp, receiver_port)
    log = (tmp / "relay.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "--config", str(config)], stdout=log, stderr=log
    )
    rows: list[str] = []
    try:
        await asyncio.sleep(2)
        url = "http://127.0.0.1:18090/in/soak"
        latencies: list[float] = []
        failures = 0
        tasks: set[asyncio.Task[None]] = set()

        async def one(session: aiohttp.ClientSession, n: int) -> None:
            nonlocal failures
            body = json.dumps({"id": f"soak-{n}", "type": "soak.tick", "pad": "x" * 1200}).encode()
            sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            started = time.monotonic()
            try:
                async with session.post(url, data=body, headers={"X-Signature": sig}) as r:
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
            latencies.append((time.monotonic() - started) * 1000)
            failures += not ok

        start = time.monotonic()
        end = start + minutes * 60
        next_report = start + 60
        n = 0
        print("| minute | RSS MB | fds | ack p50 ms | ack p99 ms | failed | pending |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
            while time.monotonic() < end:
                due = start + n / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.create_task(one(session, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                if time.monotonic() >= next_report:
                    next_report += 60
                    with contextlib.closing(sqlite3.connect(tmp / "relay.db")) as db:
                        pending = db.execute(
                            "SELECT count(*) FROM deliveries WHERE state = 'pending'"
                        ).fetchone()[0]
                    q = statistics.quantiles(latencies, n=100) if len(latencies) > 2 else [0] * 99
                    row = (
                        f"| {len(rows) + 1} | {rss_mb(proc.pid):.1f} | {open_fds(proc.pid)} | "
                        f"{q[49]:.2f} | {q[98]:.2f} | {failures} | {pending} |"
                    )
                    rows.append(row)
                    print(row, flush=True)
                    latencies.clear()
            await asyncio.gather(*tasks)
        print(f"\n{n} requests at {rate:g}/s over {minutes:g} min; relay log: {tmp}/relay.log")
        # Then nothing may be left: the retries of the receiver's 503s finish within a few
        # backoffs (cap 2 s), so wait for the queue to empty (bounded), and say what is left.
        stopped = time.monotonic()
        while True:
            with contextlib.closing(sqlite3.connect(tmp / "relay.db")) as db:
                states = dict(db.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))
            if not states.get("pending") or time.monotonic() - stopped > 60:
                break
            await asyncio.sleep(0.2)
        print(
            f"after the load: {states.get('delivered', 0)} delivered, {states.get('pending', 0)}"
            f" pending, {states.get('dead', 0)} dead, {time.monotonic() - stopped:.1f} s after the"
            " last request"
        )
        if failures or states.get("pending") or states.get("dead"):
            return 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        await receiver.cleanup()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.minutes, args.rate)))
