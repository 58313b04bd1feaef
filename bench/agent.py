"""Deliveries through one `relay agent` against a direct destination, in the same run.

Two figures, each for both ways of reaching the same receiver (bench/receiver.py, its own
process), interleaved over ``--runs`` rounds:

  1. received → delivered p50 / p99 at a fixed rate (open loop, bench/loadgen.py);
  2. the drain of a 10,000-event backlog: the events are stored while the destination
     cannot be reached (direct: paused; agent: not running), then it can (direct: resumed;
     agent: started); deliveries/s from the first delivery to the last (the agent's own
     start, about half a second, is reported apart).

The relay runs on core 0; the load generator, the receiver and the agent on core 1. Only
127.0.0.1. Prints a Markdown table and writes the raw numbers to bench/results/.

Usage: python bench/agent.py [--runs 3] [--rate 500] [--seconds 8] [--backlog 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from ingest import PORT, RECEIVER_PORT, SECRET, pinned, process  # noqa: E402

TOKEN = "bench-agent-token"
ADMIN = PORT + 1
PY = sys.executable


def relay_config(directory: Path, via_agent: bool, paused: bool) -> Path:
    path = directory / "relay.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{PORT}"
max_connections_per_address = 1000  # the load generator is one address
[storage]
path = "{directory}/relay.db"
[admin]
listen = "127.0.0.1:{ADMIN}"
token = "bench-admin"
[log]
level = "warning"
[[agents]]
name = "lan"
token = "{TOKEN}"
[[sources]]
name = "bench"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
[[destinations]]
name = "receiver"
url = "http://127.0.0.1:{RECEIVER_PORT}/hook"
max_concurrency = 20
{'agent = "lan"' if via_agent else ""}
{"paused = true" if paused else ""}
[[routes]]
source = "bench"
destinations = ["receiver"]
"""
    )
    return path


def agent_config(directory: Path) -> Path:
    path = directory / "agent.toml"
    path.write_text(
        f"""
[agent]
relay = "http://127.0.0.1:{PORT}"
name = "lan"
token = "{TOKEN}"
allow = ["http://127.0.0.1:{RECEIVER_PORT}/"]
credits = 20
[log]
level = "warning"
"""
    )
    return path


def loadgen(rate: float, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        pinned(
            1,
            [
                PY,
                str(HERE / "loadgen.py"),
                f"http://127.0.0.1:{PORT}/in/bench",
                "--rate",
                str(rate),
                "--seconds",
                str(seconds),
                "--settle",
                "5",
            ],
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def delivered(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        (n,) = conn.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'").fetchone()
    return int(n)


def resume() -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{ADMIN}/api/destinations/receiver/resume",
        method="POST",
        headers={"Authorization": "Bearer bench-admin"},
    )
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - loopback


def agent(directory: Path) -> subprocess.Popen[bytes]:
    log = (directory / "agent.log").open("ab")
    return subprocess.Popen(
        pinned(1, [PY, "-m", "relay", "agent", "--config", str(agent_config(directory))]),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def latency_run(via_agent: bool, rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        directory = Path(tmp)
        summary = directory / "receiver.json"
        stack.enter_context(
            process(
                pinned(1, [PY, str(HERE / "receiver.py"), str(RECEIVER_PORT), str(summary)]),
                RECEIVER_PORT,
                directory / "receiver.log",
            )
        )
        config = relay_config(directory, via_agent, paused=False)
        stack.enter_context(
            process(
                pinned(0, [PY, "-m", "relay", "serve", "--config", str(config)]),
                PORT,
                directory / "relay.log",
            )
        )
        worker = agent(directory) if via_agent else None
        try:
            time.sleep(1.0)  # the agent connects
            load = loadgen(rate, seconds)
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=15)
        stack.close()  # the receiver writes its summary on SIGTERM
        e2e = json.loads(summary.read_text()) if summary.exists() else {}
        return {"rps": load["rps"], "e2e": e2e}


def drain_run(via_agent: bool, backlog: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        directory = Path(tmp)
        summary = directory / "receiver.json"
        stack.enter_context(
            process(
                pinned(1, [PY, str(HERE / "receiver.py"), str(RECEIVER_PORT), str(summary)]),
                RECEIVER_PORT,
                directory / "receiver.log",
            )
        )
        config = relay_config(directory, via_agent, paused=not via_agent)
        stack.enter_context(
            process(
                pinned(0, [PY, "-m", "relay", "serve", "--config", str(config)]),
                PORT,
                directory / "relay.log",
            )
        )
        loadgen(2000, backlog / 2000)  # the backlog builds: nothing can reach the receiver
        db = directory / "relay.db"
        stored = delivered(db)
        started = time.perf_counter()
        worker = agent(directory) if via_agent else None
        if worker is None:
            resume()
        try:
            deadline = time.perf_counter() + 300
            first = None  # timed from the first delivery: the agent's start is not counted
            while time.perf_counter() < deadline:
                done = delivered(db) - stored
                if done and first is None:
                    first = (time.perf_counter(), done)
                if done >= backlog:
                    break
                time.sleep(0.02)
            took = time.perf_counter() - (first[0] if first else started)
            counted = delivered(db) - stored - (first[1] if first else 0)
            connect = (first[0] - started) if first else None
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=15)
        return {
            "delivered": delivered(db) - stored,
            "seconds": took,
            "per_second": counted / took,
            "first_after_s": connect,
        }


def span(values: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))} – {fmt.format(max(values))})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--backlog", type=int, default=10_000)
    args = parser.parse_args()
    results: dict[str, dict[str, list[Any]]] = {
        way: {"latency": [], "drain": []} for way in ("direct", "agent")
    }
    for run in range(args.runs):
        for way in ("direct", "agent"):  # interleaved: the machine's drift hits both
            lat = latency_run(way == "agent", args.rate, args.seconds)
            results[way]["latency"].append(lat)
            drain = drain_run(way == "agent", args.backlog)
            results[way]["drain"].append(drain)
            print(
                f"run {run + 1} {way}: e2e p50 {lat['e2e'].get('p50_ms')} ms, "
                f"p99 {lat['e2e'].get('p99_ms')} ms; drain {drain['per_second']:,.0f}/s",
                file=sys.stderr,
                flush=True,
            )
    rows = []
    for way in ("direct", "agent"):
        lat, drain = results[way]["latency"], results[way]["drain"]
        rows.append(
            f"| {way} | {span([r['rps'] for r in lat])} "
            f"| {span([r['e2e']['p50_ms'] for r in lat], '{:.2f}')} "
            f"| {span([r['e2e']['p99_ms'] for r in lat], '{:.2f}')} "
            f"| {span([d['per_second'] for d in drain])} "
            f"| {span([d['first_after_s'] for d in drain], '{:.2f}')} |"
        )
    ratio = statistics.median(
        a["per_second"] / d["per_second"]
        for a, d in zip(results["agent"]["drain"], results["direct"]["drain"], strict=True)
    )
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores;"
        f" medians of {args.runs} interleaved runs (min – max)\n\n"
        f"| way | achieved req/s at {args.rate:g}/s | received → delivered p50 ms | p99 ms "
        f"| drain of {args.backlog:,}, deliveries/s | first delivery after, s |\n"
        "|---|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
        + f"\n\nagent / direct drain, pair by pair: {ratio:.2f}×"
    )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"agent-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
