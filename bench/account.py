"""Where an ingested event's CPU time goes: relay-ingest, its floor and its ceiling, in one run.

Runs each target alone on core 0 under wrk (core 1, 50 connections, bench/ingest.py's
signed Stripe-like body): ``hello`` (the aiohttp + uvloop ceiling), ``groupcommit``
(bench/groupcommit.py: the least a durable receiver does) and ``relay-ingest`` (relay,
HMAC verified, durability full, no route). The core is saturated, so a target's CPU per
event is 1 / its rate. In a second pass py-spy samples relay's threads (``py-spy record
--format raw``, every thread, idle excluded; for the event loop's thread only the samples
that hold the GIL, see ``profile``); each sample is charged to a step of the ingest path by
the innermost frame it can name (``STEPS``), so the steps' shares of the samples split
relay's µs per event. py-spy is a profiling tool, not a dependency: ``pip install py-spy``
(or ``--py-spy PATH``).

``--before PATH``: also run relay-ingest from another checkout (a ``git worktree`` of an
older commit with its own ``.venv``), interleaved and sampled the same way, and print its
account beside this one's: the before and after of a change, in one run.

Usage: python bench/account.py [--seconds 10] [--runs 3] [--py-spy py-spy] [--before PATH]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ingest import PORT, pinned, process, run_wrk, server_argv, stripe_like_body, wrk_script  # noqa: E402

# (step, what a frame's "function (file)" contains): the first match from the innermost
# frame outwards names the step. Order matters: specific before general.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("fsync and SQLite (writer thread)", ("sqlite3", "(relay/store/sqlite/writer.py:")),
    ("writer batching and hand-off", ("(relay/store/batch.py:", "concurrent/futures")),
    ("HMAC verification", ("(relay/verify/",)),
    ("JSON parsing and rule extraction", ("(relay/extract.py:", "json/decoder", "json/__init__")),
    ("routing", ("(relay/route.py:",)),
    ("event id", ("(relay/ids.py:",)),
    ("metrics", ("prometheus_client", "(relay/metrics.py:")),
    ("logging", ("(relay/log.py:", "logging/__init__")),
    ("connection guard (listener)", ("(relay/listener.py:",)),
    ("ingress: the rest of the handler", ("(relay/ingress.py:",)),
    ("relay, other", ("(relay/",)),
    ("aiohttp: parse, dispatch, answer", ("aiohttp/",)),
    ("asyncio / uvloop", ("asyncio/", "uvloop")),
]


# Innermost frames of a thread that is waiting, not working: py-spy's --nonblocking mode
# cannot always tell, so they are left out (the writer thread waiting for its next batch).
WAITING = ("_worker (concurrent/futures/thread.py:81)", "wait (threading.py:")


def step_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for step, marks in STEPS:
            if any(mark in frame for mark in marks):
                return step
    return "other (interpreter, C)"


def profile(py_spy: str, pid: int, seconds: float, out: Path) -> None:
    """Two samplers at once: ``out`` (every sample of a working thread) for the writer
    thread, whose SQLite calls run without the GIL, and ``out.gil`` (``--gil``: only while
    the thread holds the GIL) for the event loop's thread, so that its waits for the GIL
    while the writer thread runs Python are not charged to the loop's C code."""
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate",
            "250", "--format", "raw", "--threads", "--nonblocking"]  # fmt: skip
    with_gil = subprocess.Popen([*argv, "--gil", "--output", f"{out}.gil"])
    subprocess.run([*argv, "--output", str(out)], check=True, capture_output=True)
    if with_gil.wait(timeout=seconds + 60):
        raise RuntimeError("py-spy --gil failed")


def steps(raw: Path) -> dict[str, collections.Counter[str]]:
    """Samples per step, for the event loop's thread ("main") and the others ("threads")."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        thread, *frames = stack.split(";")
        if frames and frames[-1].startswith(WAITING):
            continue
        counts["main" if "MainThread" in thread else "threads"][step_of(frames)] += int(n)
    return counts


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of the process's main thread and of all its other threads."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"main": 0.0, "threads": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")[2].split()
            used = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            out["main" if int(tid) == pid else "threads"] += used
    return out


def relay_pid(port: int) -> int:
    out = subprocess.run(["ss", "-ltnp", f"sport = :{port}"], capture_output=True, text=True)
    return int(out.stdout.split("pid=")[1].split(",")[0])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--before", type=Path, help="a checkout of an older relay, with .venv")
    args = parser.parse_args()
    relays = {"relay-ingest": (None, sys.executable)}
    if args.before:
        relays["relay-ingest (before)"] = (args.before, str(args.before / ".venv/bin/python"))
    targets = ["hello", "groupcommit", *relays]
    rates: dict[str, list[float]] = collections.defaultdict(list)
    samples: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    cpu: dict[tuple[str, str], float] = collections.defaultdict(float)
    events: dict[str, float] = collections.defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        script = wrk_script(stripe_like_body(), directory / "post.lua")
        url = f"http://127.0.0.1:{PORT}/in/bench"
        for run in range(args.runs):
            for target in targets:
                work = directory / f"{target.replace(' ', '_')}-{run}"
                work.mkdir()
                cwd, python = relays.get(target, (None, sys.executable))
                argv = server_argv(target.split()[0], work)
                argv[0] = python
                with process(pinned(0, argv), PORT, work / "server.log", cwd=cwd):
                    run_wrk(script, url, 2)  # warm up
                    rps = run_wrk(script, url, args.seconds)[0]
                    rates[target].append(rps)
                    if target in relays:  # a second pass, sampled
                        raw = work / "profile.txt"
                        pid = relay_pid(PORT)
                        loader = subprocess.Popen(
                            pinned(1, ["wrk", "-t1", "-c50", f"-d{args.seconds + 2:g}s",
                                       "-s", str(script), url]),
                            stdout=subprocess.PIPE, text=True,
                        )  # fmt: skip
                        time.sleep(1)
                        before, started = thread_cpu(pid), time.monotonic()
                        profile(args.py_spy, pid, args.seconds, raw)
                        after, took = thread_cpu(pid), time.monotonic() - started
                        out, _ = loader.communicate()
                        sampled = float(out.split("Requests/sec:")[1].split()[0]) * took
                        for part in ("main", "threads"):
                            cpu[target, part] += after[part] - before[part]
                        events[target] += sampled
                        samples[target, "main"].update(steps(Path(f"{raw}.gil"))["main"])
                        samples[target, "threads"].update(steps(raw)["threads"])
                print(f"run {run + 1} {target}: {rps:,.0f} req/s", flush=True)
    median = {t: statistics.median(v) for t, v in rates.items()}
    print(f"\n| target | req/s (median of {args.runs}) | µs per event |\n|---|---:|---:|")
    for target in targets:
        print(f"| {target} | {median[target]:,.0f} | {1e6 / median[target]:.0f} |")
    print(
        "\nSampled passes: CPU per event, measured per thread (/proc), split by py-spy's"
        " samples of that thread (the loop's: only samples holding the GIL) ("
        + "; ".join(f"{t}: {events[t]:,.0f} events" for t in relays)
        + "):"
    )
    for part, name in (("main", "event loop thread"), ("threads", "other threads (writer)")):
        per = {t: cpu[t, part] / events[t] * 1e6 for t in relays}
        share = {
            t: {s: n / (sum(samples[t, part].values()) or 1) for s, n in samples[t, part].items()}
            for t in relays
        }
        names = sorted(
            {s for t in relays for s in share[t]}, key=lambda s: -share[targets[2]].get(s, 0)
        )
        head = " | ".join(f"{t}: {per[t]:.1f} µs" for t in relays)
        print(f"\n| {name} | {head} |\n|---|" + "---:|" * len(relays))
        for step in names:
            cells = " | ".join(
                f"{share[t].get(step, 0) * per[t]:.1f} ({share[t].get(step, 0):.1%})"
                for t in relays
            )
            print(f"| {step} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
