"""Scenario 7 of the suite: does ingest slow down once the database is large?

Builds a database of a given size (default 5 GB) the way a year of traffic would leave it:
events with 1.5 KB Stripe-like bodies and realistic headers, spread over the past 30 days,
each delivered once (one delivery, one attempt), every index of the real schema in place.
Then runs relay on it and on a fresh database, interleaved, under the same open-loop load,
and compares ack latency.

Usage: python bench/bigdb.py [--gigabytes 5] [--runs 3] [--rate 500] [--seconds 8]
       (the suite imports build() and compare())
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import ingest  # noqa: E402

from relay.ids import new_event_id  # noqa: E402
from relay.store.sqlite import migrate  # noqa: E402

BATCH = 20_000
HEADERS = json.dumps(
    [
        ["Host", "hooks.example.com"],
        ["User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)"],
        ["Content-Type", "application/json; charset=utf-8"],
        ["Stripe-Signature", "t=1700000000,v1=[redacted]"],
        ["Accept", "*/*; q=0.5, application/xml"],
        ["Cache-Control", "no-cache"],
    ]
)


def build(path: Path, target_bytes: int, log: Callable[[str], None] = print) -> int:
    """Fill ``path`` until it reaches ``target_bytes``; returns the number of events."""
    body = ingest.stripe_like_body()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        migrate(db, path)
        # Building is not what is measured: no fsync, and a large page cache.
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -262144")
        span = 30 * 86_400.0
        start = time.time() - span - 3600
        count = 0
        estimate = 3_400  # bytes per event, corrected as we go
        total = target_bytes // estimate
        while True:
            size = path.stat().st_size + Path(f"{path}-wal").stat().st_size
            if size >= target_bytes:
                break
            if count:
                total = max(total, int(count * target_bytes / size) + 1)
            db.execute("BEGIN")
            events = []
            for i in range(count, count + BATCH):
                at = start + span * i / max(total, i + 1)
                events.append(
                    (new_event_id(at), at, f"evt_{i:024d}", "invoice.paid", HEADERS, body)
                )
            db.executemany(
                "INSERT INTO events (id, source, received_at, idempotency_key, event_type,"
                " content_type, remote_addr, headers, body)"
                " VALUES (?, 'bench', ?, ?, ?, 'application/json', '127.0.0.1', ?, ?)",
                events,
            )
            db.executemany(
                "INSERT INTO deliveries (event_id, destination, state, attempts, next_attempt_at,"
                " created_at, updated_at, delivered_at, last_status)"
                " VALUES (?, 'd0', 'delivered', 1, ?, ?, ?, ?, 200)",
                [(e[0], e[1], e[1], e[1] + 0.004, e[1] + 0.004) for e in events],
            )
            db.execute(
                "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status,"
                " response_excerpt, outcome)"
                " SELECT id, 1, created_at, 3.2, 200, 'ok', 'delivered' FROM deliveries"
                " WHERE id > (SELECT COALESCE(MAX(delivery_id), 0) FROM attempts)"
            )
            db.execute("COMMIT")
            count += BATCH
            if count % (BATCH * 25) == 0:
                log(f"  {count:,} events, {size / 1e9:.2f} GB")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    # Written without fsync: flush it now, or relay's first checkpoint would pay for
    # writing gigabytes of dirty pages and the measurement with it.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return count


def run_once(db: Path, rate: int, seconds: float, directory: Path) -> dict[str, Any]:
    import suite  # a cycle at import time otherwise: the suite imports this module

    config = suite.config(directory, 1, suite.LOADGEN_RECEIVER, name=db.stem)
    text = config.read_text().replace(f"{directory}/{db.stem}.db", str(db))
    config.write_text(text)
    receiver = suite.pinned(
        1, [sys.executable, str(HERE / "receiver.py"), str(suite.LOADGEN_RECEIVER)]
    )
    with (
        suite.process(receiver, suite.LOADGEN_RECEIVER, directory / "receiver.log"),
        suite.process(suite.relay_argv(config), suite.PORT, directory / "relay.log"),
    ):
        return suite.loadgen(rate, seconds, receive=False)


def compare(
    gigabytes: float, runs: int, rate: int, seconds: float, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Ack latency on a fresh database and on a ``gigabytes`` one, interleaved."""
    out: dict[str, Any] = {"fresh": [], "big": []}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        big = directory / "big.db"
        clock = time.monotonic()
        out["events"] = build(big, int(gigabytes * 1e9), log)
        out["build_seconds"] = time.monotonic() - clock
        out["bytes"] = big.stat().st_size
        log(
            f"  built {out['events']:,} events, {out['bytes'] / 1e9:.2f} GB in {out['build_seconds']:.0f} s"
        )
        for run in range(runs):
            for kind in ("fresh", "big"):
                db = directory / "fresh.db" if kind == "fresh" else big
                if kind == "fresh":
                    for suffix in ("", "-wal", "-shm"):
                        with contextlib.suppress(FileNotFoundError):
                            Path(f"{db}{suffix}").unlink()
                result = run_once(db, rate, seconds, directory)
                out[kind].append(result)
                log(
                    f"  run {run + 1} {kind}: ack p50 {result['ack']['p50_ms']:.2f}"
                    f" p99 {result['ack']['p99_ms']:.2f} ms"
                )
    return out


def summary(result: dict[str, Any]) -> dict[str, float]:
    def med(kind: str, key: str) -> float:
        return statistics.median(r["ack"][key] for r in result[kind])

    return {
        f"{kind}_{key}": med(kind, key) for kind in ("fresh", "big") for key in ("p50_ms", "p99_ms")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    result = compare(args.gigabytes, args.runs, args.rate, args.seconds)
    print(json.dumps({**summary(result), "events": result["events"], "bytes": result["bytes"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
