"""Durable-ingest benchmark: relay against the ceiling of its stack and a naive relay.

Targets, each measured in the same session and interleaved run by run so that the noise of
a shared machine falls on all of them alike:

  hello         aiohttp + uvloop that reads the body and answers 200 (the ceiling,
                and the receiver of relay's deliveries in every run)
  groupcommit   the floor under relay's ingest (bench/groupcommit.py): HMAC verified,
                key parsed, the row group-committed (WAL, synchronous FULL), then 200
  relay-full    relay, group commit, durability "full" (the default)
  relay-normal  relay, group commit, durability "normal"
  relay-ingest  relay-full with no route: the same ingest, no delivery sharing the core
  relay-1       relay with max_batch = 1: one commit per request, durability "full", no
                route (so no delivery competes with ingest for its one-op commits)
  naive         aiohttp + aiosqlite committing each request (an afternoon's relay)
  webhook-true  adnanh/webhook (Debian's ``webhook``, Go) running /bin/true per request
  webhook-none  adnanh/webhook answering with no command to run

Load: wrk, 1 thread, 50 connections, a signed ~1.5 KB JSON body shaped like a Stripe event;
every relay target verifies the HMAC, and relay-full and relay-normal route to a live
receiver, so deliveries run during the measurement as they would in use. Server and load are pinned to different cores with
taskset where it exists. Only 127.0.0.1.

Usage: python bench/ingest.py [--runs 3] [--seconds 10] [--quick] [--targets a,b]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret"
PORT, RECEIVER_PORT = 18080, 19000
TARGETS = [
    "hello",
    "groupcommit",
    "relay-full",
    "relay-normal",
    "relay-ingest",
    "relay-1",
    "naive",
]
WEBHOOK_TARGETS = ["webhook-true", "webhook-none"]


def stripe_like_body() -> bytes:
    """About 1.5 KB of JSON with the shape of a Stripe invoice.paid event."""
    line = {
        "id": "il_1Nq",
        "amount": 4200,
        "currency": "usd",
        "description": "Pro plan, billed monthly. " * 41,
    }
    event = {
        "id": "evt_1NqQeX2eZvKYlo2CbU0eXj7Q",
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1700000000,
        "type": "invoice.paid",
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {
            "object": {
                "id": "in_1NqQeX",
                "object": "invoice",
                "amount_due": 4200,
                "customer": "cus_9s6XKzkNRiz8i3",
                "lines": {"data": [line]},
            }
        },
    }
    return json.dumps(event).encode()


def wrk_script(body: bytes, path: Path) -> Path:
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert b"]]" not in body
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{body.decode()}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-Signature"] = "{signature}"\n'
    )
    return path


def relay_config(directory: Path, durability: str, max_batch: int, routed: bool = True) -> Path:
    path = directory / f"relay-{durability}-{max_batch}.toml"
    route = '[[routes]]\nsource = "bench"\ndestinations = ["receiver"]' if routed else ""
    path.write_text(f"""
[server]
listen = "127.0.0.1:{PORT}"
max_connections_per_address = 1000  # the load generator is one address
[storage]
path = "{directory}/relay.db"
durability = "{durability}"
max_batch = {max_batch}
[log]
level = "info"  # the default: no line per event since issue 22
[[sources]]
name = "bench"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
event_type = "json:/type"
[[destinations]]
name = "receiver"
url = "http://127.0.0.1:{RECEIVER_PORT}/hook"
max_concurrency = 20
{route}
""")
    return path


def pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if shutil.which("taskset") else argv


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@contextlib.contextmanager
def process(
    argv: list[str], port: int, log: Path, timeout: float = 15.0, cwd: Path | None = None
) -> Iterator[None]:
    """Run argv until the block ends; ready once something accepts on ``port``."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout
        while not _listening(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv} not listening within {timeout}s")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Result:
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no {percentile}% latency in wrk output:\n{text}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(script: Path, url: str, seconds: float) -> tuple[float, float, float, int]:
    argv = pinned(1, ["wrk", "-t1", "-c50", f"-d{seconds:g}s", "--latency", "-s", str(script), url])
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, _latency(out, "50"), _latency(out, "99"), int(errors.group(1)) if errors else 0


def server_argv(target: str, directory: Path) -> list[str]:
    python = sys.executable
    if target == "hello":
        return [python, str(HERE / "hello.py"), str(PORT)]
    if target == "naive":
        return [python, str(HERE / "naive.py"), str(PORT), str(directory / "naive.db")]
    if target == "groupcommit":
        return [python, str(HERE / "groupcommit.py"), str(PORT), str(directory / "floor.db")]
    if target.startswith("webhook-"):
        hooks = directory / "hooks.json"
        command = "/bin/true" if target == "webhook-true" else ""
        hooks.write_text(
            json.dumps([{"id": "bench", "execute-command": command, "response-message": "ok"}])
        )
        return ["webhook", "-hooks", str(hooks), "-ip", "127.0.0.1", "-port", str(PORT)]
    durability, batch = {
        "relay-full": ("full", 512),
        "relay-normal": ("normal", 512),
        "relay-ingest": ("full", 512),
        "relay-1": ("full", 1),
    }[target]
    config = relay_config(
        directory, durability, batch, routed=target in ("relay-full", "relay-normal")
    )
    return [python, "-m", "relay", "serve", "--config", str(config)]


def measure(
    target: str,
    script: Path,
    seconds: float,
    warmup: float,
    cwd: Path | None = None,
    level: str | None = None,
) -> Result:
    """One run of ``target``. ``cwd``: run relay from that checkout (its modules are
    imported from there); ``level``: relay's log level instead of the default."""
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        directory = Path(tmp)
        argv = server_argv(target, directory)
        if level is not None:
            config = Path(argv[-1])
            text = config.read_text()
            start = text.index('level = "')
            end = text.index("\n", start)
            config.write_text(f'{text[:start]}level = "{level}"{text[end:]}')
        # The receiver is the ceiling's own server: it reads the body and answers 200.
        receiver = [sys.executable, str(HERE / "hello.py"), str(RECEIVER_PORT)]
        with (
            process(pinned(1, receiver), RECEIVER_PORT, directory / "receiver.log"),
            process(pinned(0, argv), PORT, directory / "server.log", cwd=cwd),
        ):
            path = "/hooks/bench" if target.startswith("webhook-") else "/in/bench"
            url = f"http://127.0.0.1:{PORT}{path}"
            run_wrk(script, url, warmup)
            rps, p50, p99, errors = run_wrk(script, url, seconds)
        if target.startswith("relay"):
            with contextlib.closing(sqlite3.connect(directory / "relay.db")) as db:
                stored = db.execute("SELECT count(*) FROM events").fetchone()[0]
            if stored < rps * seconds * 0.9:
                raise RuntimeError(f"{target}: only {stored} events stored for {rps:.0f}/s")
    return Result(target, rps, p50, p99, errors)


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores, {model}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def table(results: list[Result], targets: list[str]) -> str:
    by: dict[str, list[Result]] = {t: [r for r in results if r.target == t] for t in targets}
    med = {t: statistics.median(r.rps for r in rs) for t, rs in by.items() if rs}
    lines = [
        "| target | req/s median | min - max | p50 ms | p99 ms | vs hello | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t, rs in by.items():
        if not rs:
            continue
        rps = [r.rps for r in rs]
        ratio = f"{med[t] / med['hello']:.0%}" if "hello" in med else "-"
        lines.append(
            f"| {t} | {med[t]:,.0f} | {min(rps):,.0f} - {max(rps):,.0f} | "
            f"{statistics.median(r.p50_ms for r in rs):.2f} | "
            f"{statistics.median(r.p99_ms for r in rs):.2f} | {ratio} | "
            f"{sum(r.errors for r in rs)} |"
        )
    if "relay-full" in med and "relay-1" in med:
        lines.append("")
        lines.append(
            f"group commit / per-request commit (both durability full): "
            f"{med['relay-full'] / med['relay-1']:.1f}x"
        )
    if "relay-full" in med and "naive" in med:
        lines.append(f"relay-full / naive relay: {med['relay-full'] / med['naive']:.1f}x")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="1 run of 3 s per target")
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds, args.warmup = 1, 3.0, 1.0
    if not shutil.which("wrk"):
        print(
            "bench: wrk is missing; install Debian's package: apt-get install -y wrk",
            file=sys.stderr,
        )
        return 1
    targets = args.targets.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        script = wrk_script(stripe_like_body(), Path(tmp) / "post.lua")
        results = []
        for run in range(args.runs):
            for target in targets:
                result = measure(target, script, args.seconds, args.warmup)
                print(
                    f"run {run + 1} {target}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} "
                    f"ms, p99 {result.p99_ms:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
                results.append(result)
    report = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}\n"
        f"wrk -t1 -c50 -d{args.seconds:g}s, body {len(stripe_like_body())} bytes, "
        f"{args.runs} runs each, interleaved\n\n{table(results, targets)}\n"
    )
    print(report)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
