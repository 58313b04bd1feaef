"""Relays on PostgreSQL (1, 2 and 3 processes on one database) against one relay on SQLite,
in the same run.

Two figures per setup, over ``--runs`` interleaved rounds:

  1. ingest: events acknowledged per second, wrk against every relay at once (50
     connections shared among them, a Stripe-sized signed body), the destination paused so
     that only ingest runs;
  2. end to end: the same load with the destination live (bench/hello.py as receiver):
     events per second from the first request to the last delivery committed.

PostgreSQL 15+ runs from a temporary cluster this script starts (initdb, Unix socket,
fsync on, synchronous_commit on: as durable as SQLite's durability = "full"). Nothing is
pinned to a core: on a 2-core machine the relays, PostgreSQL, wrk and the receiver share
both. Only 127.0.0.1. Prints a Markdown table; raw numbers go to bench/results/.

Usage: python bench/cluster.py [--runs 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from ingest import (  # noqa: E402
    PORT,
    RECEIVER_PORT,
    SECRET,
    machine,
    process,
    stripe_like_body,
    wrk_script,
)

from tests import postgres  # noqa: E402

PY = sys.executable
SETUPS = ["sqlite-1", "postgresql-1", "postgresql-2", "postgresql-3"]
CONNECTIONS = 48
CONCURRENCY = 20  # the destination's max_concurrency (--concurrency)


def config(directory: Path, n: int, storage: str, paused: bool, concurrency: int) -> Path:
    path = directory / f"relay{n}.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{PORT + n}"
max_connections_per_address = 1000  # wrk is one address
[storage]
{storage}
[log]
level = "warning"
[[sources]]
name = "bench"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
event_type = "json:/type"
[[destinations]]
name = "receiver"
url = "http://127.0.0.1:{RECEIVER_PORT}/hook"
max_concurrency = {concurrency}
{"paused = true" if paused else ""}
[[routes]]
source = "bench"
destinations = ["receiver"]
"""
    )
    return path


def wrk(script: Path, ports: list[int], seconds: float) -> float:
    """wrk against every relay at once; the summed requests per second."""
    each = max(1, CONNECTIONS // len(ports))
    procs = [
        subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{each}",
                f"-d{seconds:g}s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}/in/bench",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    total = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                total += float(line.split()[1])
            if "Non-2xx" in line:
                raise RuntimeError(f"wrk saw errors: {line}")
    return total


class Counter:
    def __init__(self, setup: str, where: str) -> None:
        self.setup, self.where = setup, where

    def one(self, statement: str) -> int:
        if self.setup.startswith("sqlite"):
            with contextlib.closing(sqlite3.connect(self.where)) as db:
                return int(db.execute(statement).fetchone()[0])
        import psycopg

        with psycopg.connect(self.where) as conn:
            row = conn.execute(statement).fetchone()
            assert row is not None
            return int(row[0])


def run_setup(
    setup: str,
    script: Path,
    seconds: float,
    sockets: Path,
    live: bool,
    tag: str,
    concurrency: int = CONCURRENCY,
) -> dict[str, Any]:
    kind, count = setup.rsplit("-", 1)
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        if kind == "sqlite":
            where = str(directory / "relay.db")
            storage = f'path = "{where}"'
        else:
            where = postgres.create_database(sockets, f"bench_{tag}")
            storage = f'url = "{where}"'
        stack.enter_context(
            process(
                [PY, str(HERE / "hello.py"), str(RECEIVER_PORT)],
                RECEIVER_PORT,
                directory / "receiver.log",
            )
        )
        ports = []
        for n in range(int(count)):
            conf = config(directory, n, storage, not live, concurrency)
            stack.enter_context(
                process(
                    [PY, "-m", "relay", "serve", "--config", str(conf)],
                    PORT + n,
                    directory / f"relay{n}.log",
                    timeout=30,
                )
            )
            ports.append(PORT + n)
        counter = Counter(setup, where)
        before = cpu_seconds()
        started = time.perf_counter()
        rps = wrk(script, ports, seconds)
        stored = counter.one("SELECT count(*) FROM events")
        if live:
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline:
                done = counter.one("SELECT count(*) FROM deliveries WHERE state = 'delivered'")
                if done >= stored:
                    break
                time.sleep(0.05)
        took = time.perf_counter() - started
        after = cpu_seconds()
        # Each part's share of the machine (2 cores = 200%) while it ran.
        share = {k: round(100 * (after[k] - before[k]) / took) for k in after}
        result = {"ingest": rps, "stored": stored, "seconds": took, "cpu": share}
        if live:
            result["e2e"] = stored / took
        return result


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of the relays, PostgreSQL and the receiver, from ps."""
    out = subprocess.run(
        ["ps", "-eo", "user=,times=,args="], capture_output=True, text=True, check=True
    ).stdout
    found = {"relay": 0.0, "postgresql": 0.0, "receiver": 0.0}
    for line in out.splitlines():
        user, seconds, args = line.split(None, 2)
        if "relay serve" in args:
            found["relay"] += float(seconds)
        elif user == "postgres" or args.startswith("postgres"):
            found["postgresql"] += float(seconds)
        elif "hello.py" in args:
            found["receiver"] += float(seconds)
    return found


def span(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f} – {max(values):,.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    setups = args.setups.split(",")
    script = wrk_script(stripe_like_body(), Path(tempfile.mkdtemp()) / "post.lua")
    results: dict[str, dict[str, list[float]]] = {s: {"ingest": [], "e2e": []} for s in setups}
    cpu: dict[str, list[dict[str, dict[str, int]]]] = {}
    base = Path(tempfile.mkdtemp(prefix="relay-bench-pg-"))
    try:
        sockets = postgres.start(base)
        for run in range(args.runs):
            for setup in setups:  # interleaved: the machine's drift hits every setup
                tag = f"{run}_{setup.replace('-', '_')}"
                c = args.concurrency
                ingest = run_setup(setup, script, args.seconds, sockets, False, f"i{tag}", c)
                e2e = run_setup(setup, script, args.seconds, sockets, True, f"e{tag}", c)
                results[setup]["ingest"].append(ingest["ingest"])
                results[setup]["e2e"].append(e2e["e2e"])
                cpu.setdefault(setup, []).append({"ingest": ingest["cpu"], "e2e": e2e["cpu"]})
                print(
                    f"run {run + 1} {setup}: ingest {ingest['ingest']:,.0f}/s, "
                    f"end to end {e2e['e2e']:,.0f}/s ({e2e['stored']} events); CPU % "
                    f"ingest {ingest['cpu']}, end to end {e2e['cpu']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        postgres.stop(base)
    base_ingest = statistics.median(results[setups[0]]["ingest"])
    base_e2e = statistics.median(results[setups[0]]["e2e"])
    lines = [
        "| setup | ingest events/s, median (min – max) | vs SQLite | end to end events/s"
        " | vs SQLite |",
        "|---|---:|---:|---:|---:|",
    ]
    for setup in setups:
        ingest, e2e = results[setup]["ingest"], results[setup]["e2e"]
        lines.append(
            f"| {setup} | {span(ingest)} | {statistics.median(ingest) / base_ingest:.2f}x"
            f" | {span(e2e)} | {statistics.median(e2e) / base_e2e:.2f}x |"
        )
    lines += [
        "",
        "| setup | CPU %, ingest: relays / PostgreSQL / receiver | end to end |",
        "|---|---:|---:|",
    ]
    for setup in setups:

        def med(phase: str, part: str, setup: str = setup) -> int:
            return int(statistics.median(r[phase][part] for r in cpu[setup]))

        parts = ("relay", "postgresql", "receiver")
        lines.append(
            f"| {setup} | {' / '.join(str(med('ingest', p)) for p in parts)}"
            f" | {' / '.join(str(med('e2e', p)) for p in parts)} |"
        )
    report = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}\n"
        f"python bench/cluster.py --runs {args.runs} --seconds {args.seconds:g}"
        f" --concurrency {args.concurrency}; "
        f"wrk {CONNECTIONS} connections in all, body {len(stripe_like_body())} bytes\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print(report)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    raw = {"results": results, "cpu": cpu}
    (out / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(raw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
