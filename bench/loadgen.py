"""Open-loop load generator, run as its own process (pinned to the other core).

Request i is sent at start + i/rate whatever happened to the earlier ones, so a slow server
shows as latency, not as less load (no coordinated omission). Each request carries a unique
X-Request-Id and its wall-clock send time (X-Sent-At), which bench/receiver.py, the
destination in its own process, turns into received → delivered latency. (``--receive
PORT`` makes this process the destination too, which is simpler but shares its core.) Latencies go into a log-linear histogram (HDR-style: 1% precision
from 10 µs to 100 s) and come out as p50, p99, p99.9.

Prints one JSON line: {"sent", "acked", "errors", "rps", "ack": {...}, "e2e": {...}}.

Usage: python bench/loadgen.py URL --rate 500 --seconds 10 [--receive 19100]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import SECRET, stripe_like_body


class Histogram:
    """Buckets of 1% width on a log scale: small, fixed memory, percentiles within 1%."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, seconds: float) -> None:
        bucket = int(math.log(max(seconds, 1e-5)) / math.log(1.01))
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.total += 1

    def percentile(self, p: float) -> float | None:
        if not self.total:
            return None
        rank = p / 100 * self.total
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return 1.01 ** (bucket + 1) * 1000  # ms, the bucket's upper edge
        return None

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.total,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "p999_ms": self.percentile(99.9),
        }


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--receive", type=int, default=0, help="also be the destination")
    parser.add_argument("--settle", type=float, default=3.0, help="wait for deliveries")
    args = parser.parse_args()

    body = stripe_like_body()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    sent_at: dict[str, float] = {}
    ack, e2e = Histogram(), Histogram()
    counts = {"acked": 0, "errors": 0}
    kinds: dict[str, int] = {}  # why requests failed: an HTTP status or a client error
    samples: dict[str, str] = {}  # the first answer of each failing status

    runner = None
    if args.receive:

        async def receive(request: web.Request) -> web.Response:
            await request.read()
            key = request.headers.get("X-Request-Id", "")
            started = sent_at.pop(key, None)  # the first delivery of each event only
            if started is not None:
                e2e.add(time.perf_counter() - started)
            return web.Response()

        app = web.Application()
        app.router.add_post("/{tail:.*}", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.receive).start()

    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            key = f"lg-{i}"
            headers = {
                "Content-Type": "application/json",
                "X-Signature": signature,
                "X-Request-Id": key,
                "X-Sent-At": repr(time.time()),  # for bench/receiver.py, in its own process
            }
            started = time.perf_counter()
            sent_at[key] = started
            try:
                async with session.post(args.url, data=body, headers=headers) as response:
                    answer = await response.read()
                    ok = response.status == 200
                    why = f"HTTP {response.status}"
                    if not ok and why not in samples:
                        samples[why] = answer[:200].decode("utf-8", "replace")
            except aiohttp.ClientError as exc:
                ok, why = False, type(exc).__name__
            if ok:
                ack.add(time.perf_counter() - started)
                counts["acked"] += 1
            else:
                counts["errors"] += 1
                kinds[why] = kinds.get(why, 0) + 1
                sent_at.pop(key, None)

        tasks = []
        total = int(args.rate * args.seconds)
        begin = time.perf_counter()
        for i in range(total):
            delay = begin + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    if runner is not None:
        deadline = time.perf_counter() + args.settle
        while sent_at and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        await runner.cleanup()
    print(
        json.dumps(
            {
                "sent": total,
                "acked": counts["acked"],
                "errors": counts["errors"],
                "error_kinds": kinds,
                "error_samples": samples,
                "rps": counts["acked"] / elapsed,
                "ack": ack.summary(),
                "e2e": e2e.summary() if args.receive else None,
                "undelivered": len(sent_at) if args.receive else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    raise SystemExit(asyncio.run(main()))
