"""The console on a big database: how long its pages take with 1,000,000 events, idle and
while events arrive.

Builds a database of N events (three sources, a few types, 1% dead, with the per-minute
rollup the writer would have kept), starts relay on it with the admin listener, signs in
like a browser, and times each page (median of ``--repeat`` loads, time to the full answer
as seen by a client on 127.0.0.1). Then again while bench/loadgen.py posts ``--rate``
signed events per second (open loop) that relay verifies, stores and delivers to the load
generator itself. Only 127.0.0.1.

Usage: python bench/console.py [--events 1000000] [--repeat 10] [--rate 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.ids import new_event_id  # noqa: E402 - after the path tweak
from relay.store.sqlite import migrate  # noqa: E402

TOKEN = "bench-token"
PORT, ADMIN, RECEIVE = 18421, 18422, 18423
SECRET = "bench-secret"  # bench/ingest.py's, which bench/loadgen.py signs with
TYPES = ("invoice.paid", "invoice.created", "customer.updated", "charge.refunded")


def pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if shutil.which("taskset") else argv


def build(path: Path, count: int) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        migrate(db, path)
        start = time.time() - count * 0.05
        headers = json.dumps([["Content-Type", "application/json"]])
        db.execute("BEGIN")
        for base in range(0, count, 20_000):
            rows = []
            for i in range(base, min(count, base + 20_000)):
                kind = TYPES[i % len(TYPES)]
                body = json.dumps({"id": f"evt_{i}", "type": kind, "amount": i % 977}).encode()
                rows.append(
                    (
                        new_event_id(start + i * 0.05),  # as relay mints them: time first
                        ("stripe", "github", "shop")[i % 3],
                        start + i * 0.05,
                        f"key-{i}",
                        kind,
                        "application/json",
                        "127.0.0.1",
                        headers,
                        body,
                    )
                )
            db.executemany(
                "INSERT INTO events (id, source, received_at, idempotency_key, event_type,"
                " content_type, remote_addr, headers, body) VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
        db.execute(
            "INSERT INTO deliveries (event_id, destination, state, attempts, next_attempt_at,"
            " created_at, updated_at, delivered_at, last_status, last_error)"
            " SELECT id, 'app', CASE WHEN rowid % 100 = 0 THEN 'dead' ELSE 'delivered' END, 1,"
            " received_at, received_at, received_at + 0.01,"
            " CASE WHEN rowid % 100 = 0 THEN NULL ELSE received_at + 0.01 END,"
            " CASE WHEN rowid % 100 = 0 THEN 422 ELSE 200 END,"
            " CASE WHEN rowid % 100 = 0 THEN 'HTTP 422' END FROM events"
        )
        # The rollup the writer keeps as it commits (relay/store/rollup.py): received per
        # source, queued, delivered (10 ms: latency bucket 1) and dead per destination.
        db.execute(
            "INSERT INTO minutes SELECT CAST(received_at / 60 AS INTEGER) AS m, 'source',"
            " source, 'received', COUNT(*) FROM events GROUP BY m, source"
        )
        for metric, state in (
            ("queued", None),
            ("delivered", "delivered"),
            ("lat1", "delivered"),
            ("dead", "dead"),
        ):
            db.execute(
                "INSERT INTO minutes SELECT CAST(updated_at / 60 AS INTEGER) AS m,"
                " 'destination', destination, ?, COUNT(*) FROM deliveries"
                " WHERE ? IS NULL OR state = ? GROUP BY m, destination",
                (metric, state, state),
            )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # No ANALYZE: relay never runs it, so the planner sees what it sees in the field.


def config(directory: Path, db: Path, deliver: bool = False) -> Path:
    path = directory / "relay.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{PORT}"
max_connections_per_address = 1000  # the load generator is one address with many connections
[storage]
path = "{db}"
[log]
level = "warning"
[admin]
listen = "127.0.0.1:{ADMIN}"
token = "{TOKEN}"
[[sources]]
name = "stripe"
verify = "none"
[[sources]]
name = "bench"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
[[destinations]]
name = "app"
url = "http://127.0.0.1:{RECEIVE}/hook"
max_concurrency = 50
"""
        + (
            '[[routes]]\nsource = "bench"\ndestinations = ["app"]\n'
            if deliver
            else ""  # the events arrive and are stored; the overview still counts them
        )
    )
    return path


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def sign_in() -> str:
    opener = urllib.request.build_opener(NoRedirect)
    data = urllib.parse.urlencode({"token": TOKEN}).encode()
    try:
        opener.open(f"http://127.0.0.1:{ADMIN}/ui/login", data=data, timeout=10)
    except urllib.error.HTTPError as exc:  # the 303 with the cookie
        cookie = re.search(r"relay_session=([^;]+)", exc.headers.get("Set-Cookie", ""))
        assert cookie is not None
        return cookie.group(1)
    raise RuntimeError("no session cookie")


def timed(path: str, cookie: str, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        request = urllib.request.Request(
            f"http://127.0.0.1:{ADMIN}{path}", headers={"Cookie": f"relay_session={cookie}"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
            response.read()
            assert response.status == 200
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="events/s during the second pass"
    )
    parser.add_argument("--load-seconds", type=float, default=40.0)
    parser.add_argument(
        "--deliver", action="store_true", help="route the arriving events to a destination too"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        db = directory / "relay.db"
        t0 = time.monotonic()
        build(db, args.events)
        print(
            f"built {args.events:,} events in {time.monotonic() - t0:.0f}s "
            f"({db.stat().st_size / 1e6:.0f} MB)"
        )
        # As bench/suite.py's fixed-rate runs: relay on core 0; the load generator and the
        # destination (bench/receiver.py) on core 1; this process times pages from either.
        receiver = subprocess.Popen(
            pinned(
                1,
                [
                    sys.executable,
                    str(ROOT / "bench" / "receiver.py"),
                    str(RECEIVE),
                    str(directory / "e2e.json"),
                ],
            )
        )
        proc = subprocess.Popen(
            pinned(
                0,
                [
                    sys.executable,
                    "-m",
                    "relay",
                    "serve",
                    "--config",
                    str(config(directory, db, args.deliver)),
                ],
            ),
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    cookie = sign_in()
                    break
                except OSError:
                    time.sleep(0.2)
            with contextlib.closing(sqlite3.connect(db)) as conn:
                middle = conn.execute(
                    "SELECT id FROM events WHERE rowid = ?", (args.events // 2,)
                ).fetchone()[0]
                dead_one = conn.execute(
                    "SELECT event_id FROM deliveries WHERE state = 'dead' LIMIT 1"
                ).fetchone()[0]
            pages = [
                ("overview", "/ui/"),
                ("overview refresh (fragment)", "/ui/?fragment=1"),
                ("events, first page", "/ui/events"),
                ("events, by source", "/ui/events?source=github"),
                ("events, by type prefix", "/ui/events?type=invoice"),
                ("events, source + type", "/ui/events?source=shop&type=charge.*"),
                ("events, dead at app", "/ui/events?status=dead&destination=app"),
                ("events, From/Until (yesterday)", "/ui/events?since=12h&until=11h"),
                ("events, a page in the middle", f"/ui/events?before={middle}"),
                ("live tail (fragment)", "/ui/tail?fragment=1"),
                ("one event", f"/ui/events/{middle}"),
                ("one dead event (request as sent)", f"/ui/events/{dead_one}"),
                ("dead letters, page 1 of 50", "/ui/dead"),
                ("dead letters, From/Until", "/ui/dead?from=12h&until=11h"),
                ("dead letters, grouped by type", "/ui/dead?group=type"),
                ("rejections", "/ui/rejections"),
            ]
            idle = {name: timed(path, cookie, args.repeat) for name, path in pages}
            load = subprocess.Popen(
                pinned(
                    1,
                    [
                        sys.executable,
                        str(ROOT / "bench" / "loadgen.py"),
                        f"http://127.0.0.1:{PORT}/in/bench",
                        "--rate",
                        str(args.rate),
                        "--seconds",
                        str(args.load_seconds),
                    ],
                ),
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(3)  # the load is steady
            busy = {name: timed(path, cookie, args.repeat) for name, path in pages}
            out, _ = load.communicate(timeout=args.load_seconds + 120)
            result = json.loads(out.strip().splitlines()[-1])
            print(
                f"\nload: {result['sent']} sent at {args.rate:g}/s, {result['acked']} acked"
                f" ({result['rps']:.0f}/s), {result['errors']} errors {result['error_kinds']};"
                f" ack p99 {result['ack']['p99_ms']} ms"
            )
            print(
                f"\n| page | idle median ms | idle max ms | at {args.rate:g} ev/s median ms |"
                " max ms |\n|---|---:|---:|---:|---:|"
            )
            for name, _ in pages:
                (m0, w0), (m1, w1) = idle[name], busy[name]
                print(f"| {name} | {m0:.0f} | {w0:.0f} | {m1:.0f} | {w1:.0f} |")
            time.sleep(3)  # the last deliveries arrive
            receiver.terminate()
            receiver.wait(timeout=30)
            e2e = json.loads((directory / "e2e.json").read_text())
            if e2e["count"]:
                print(
                    f"\nreceived → delivered under load: p50 {e2e['p50_ms']:.0f} ms,"
                    f" p99 {e2e['p99_ms']:.0f} ms ({e2e['count']} delivered)"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if receiver.poll() is None:
                receiver.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
