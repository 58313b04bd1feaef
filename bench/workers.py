"""A prototype for issue 22's second core: ingest workers sharing the listening socket.

Can one SQLite relay use a second core by running N ingest processes on one port
(SO_REUSEPORT: the kernel spreads connections over them) that group-commit into the same
database? relay itself refuses that (the single-instance lock, and every process would
schedule deliveries); this script starts relay's own ingest path N times with the lock
skipped and reuse_port set, no route (ingest only, so no process delivers), and measures
it under wrk against the same relay in one process, beside the hello ceiling run the same
ways, interleaved:

  pinned   one process on core 0, wrk on core 1 (how bench/ingest.py measures);
  2 cores  everything unpinned: N server processes and wrk share both cores (as on a Pi).

CPU per event is every server process's CPU (/proc, utime + stime) over the run divided by
the requests answered; wrk's own CPU is reported beside, since on two cores it competes.

Usage: python bench/workers.py [--runs 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from ingest import PORT, relay_config, stripe_like_body, wrk_script  # noqa: E402

# Run as a server process: relay with its lock skipped and reuse_port on, or hello.
LAUNCH_RELAY = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
import relay.store.sqlite.files as files
from aiohttp import web
from relay import listener
files.lock_database = lambda path: os.open(os.devnull, os.O_RDONLY)  # the prototype's only cheat
async def start(self):
    await web.BaseSite.start(self)
    server, guard = self._runner.server, self.guard
    self._server = await asyncio.get_running_loop().create_server(
        lambda: listener.Connection(guard, server), self._host, self._port,
        backlog=self._backlog, reuse_address=True, reuse_port=True)
listener.GuardedSite.start = start
if os.environ.get("COMMIT_LOCK"):  # commits take turns on a flock: waiters woken at once
    import fcntl
    from relay.store.sqlite import writer
    turn = os.open(os.environ["COMMIT_LOCK"], os.O_RDWR | os.O_CREAT, 0o600)
    run = writer.Writer._run
    def _run(self, batch, offers):
        fcntl.flock(turn, fcntl.LOCK_EX)
        try:
            return run(self, batch, offers)
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)
    writer.Writer._run = _run
from relay.cli import main
sys.exit(main(["serve", "--config", sys.argv[1]]))
"""
LAUNCH_HELLO = """
import sys, uvloop
from aiohttp import web
async def hello(request):
    await request.read()
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/in/{{source}}", hello)
uvloop.install()
web.run_app(app, host="127.0.0.1", port={port}, access_log=None, reuse_port=True, print=None)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listening_pids(port: int) -> list[int]:
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    return sorted({int(part.split(",")[0]) for part in out.split("pid=")[1:]})


@contextlib.contextmanager
def servers(
    kind: str, count: int, pin: bool, directory: Path, turns: bool = False
) -> Iterator[list[int]]:
    """``count`` server processes on PORT, started one after another (the first migrates
    the database), each ready once the port lists it."""
    config = relay_config(directory, "full", 512, routed=False)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            code = (LAUNCH_RELAY if kind == "relay" else LAUNCH_HELLO).format(
                root=str(ROOT), port=PORT
            )
            argv = [sys.executable, "-c", code, str(config)]
            if pin:
                argv = ["taskset", "-c", "0", *argv]
            with (directory / f"{kind}-{n}.log").open("w") as log:
                env = {**os.environ, "COMMIT_LOCK": str(directory / "turn")} if turns else None
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
            deadline = time.monotonic() + 20
            while len(listening_pids(PORT)) < n + 1:
                if procs[-1].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((directory / f"{kind}-{n}.log").read_text())
                time.sleep(0.05)
        yield listening_pids(PORT)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)


def wrk(script: Path, seconds: float, pin: bool) -> tuple[float, float, float, float]:
    """(req/s, p50 ms, p99 ms, wrk's CPU seconds)."""
    argv = ["wrk", "-t1", "-c50", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    argv.append(f"http://127.0.0.1:{PORT}/in/bench")
    if pin:
        argv = ["taskset", "-c", "1", *argv]
    started = os.times()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    ended = os.times()
    text = out.stdout
    if "Non-2xx" in text:
        raise RuntimeError(text)

    def ms(percentile: str) -> float:
        value = text.split(f" {percentile}% ")[1].split()[0]
        unit = value.lstrip("0123456789.")
        return float(value[: -len(unit)]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(text.split("Requests/sec:")[1].split()[0])
    used = (ended.children_user - started.children_user) + (
        ended.children_system - started.children_system
    )
    return rps, ms("50"), ms("99"), used


CASES = [  # (name, server, processes, pinned, commits take turns on a flock)
    ("hello, 1 process, pinned", "hello", 1, True, False),
    ("hello, 2 processes, 2 cores", "hello", 2, False, False),
    ("relay-ingest, 1 process, pinned", "relay", 1, True, False),
    ("relay-ingest, 1 process, 2 cores", "relay", 1, False, False),
    ("relay-ingest, 2 processes, 2 cores", "relay", 2, False, False),
    ("relay-ingest, 2 processes, 2 cores, commits take turns (flock)", "relay", 2, False, True),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float, float, float]]] = collections.defaultdict(
        list
    )
    for run in range(args.runs):
        for name, kind, count, pin, turns in CASES:
            with tempfile.TemporaryDirectory(prefix="relay-workers-") as tmp:
                directory = Path(tmp)
                script = wrk_script(stripe_like_body(), directory / "post.lua")
                with servers(kind, count, pin, directory, turns) as pids:
                    wrk(script, 2, pin)  # warm up
                    before = sum(cpu_seconds(p) for p in pids)
                    rps, p50, p99, wrk_cpu = wrk(script, args.seconds, pin)
                    used = sum(cpu_seconds(p) for p in pids) - before
                if kind == "relay":
                    with contextlib.closing(sqlite3.connect(directory / "relay.db")) as db:
                        stored = db.execute("SELECT count(*) FROM events").fetchone()[0]
                    if stored < rps * args.seconds:
                        raise RuntimeError(f"{name}: {stored} stored for {rps:,.0f} req/s")
                served = rps * args.seconds
                results[name].append((rps, p50, p99, used / served * 1e6, wrk_cpu / served * 1e6))
                print(
                    f"run {run + 1} {name}: {rps:,.0f} req/s, p99 {p99:.1f} ms,"
                    f" server CPU {used / served * 1e6:.0f} µs/req",
                    flush=True,
                )
    print(
        "\n| case | req/s (median) | min – max | p50 ms | p99 ms | server CPU µs/req |"
        " wrk CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for name, *_ in CASES:
        rows = results[name]
        med = [statistics.median(r[i] for r in rows) for i in range(5)]
        low, high = min(r[0] for r in rows), max(r[0] for r in rows)
        print(
            f"| {name} | {med[0]:,.0f} | {low:,.0f} – {high:,.0f} | {med[1]:.2f} |"
            f" {med[2]:.2f} | {med[3]:.0f} | {med[4]:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
