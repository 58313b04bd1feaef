"""A/B: relay from two or more checkouts (or log levels), interleaved, under wrk.

Each variant is ``name=CHECKOUT[:LEVEL]``: relay run from CHECKOUT (a ``git worktree`` of
the commit to compare; its modules are imported from there, with this environment's
packages) at log level LEVEL (default: bench/ingest.py's). A name ending in ``+deliver``
runs relay-full (every event delivered to a receiver on core 1), else relay-ingest (no
route). Relay on core 0, wrk on core 1, 50 connections; the runs alternate between
variants so the machine's drift hits them alike; medians, with min and max.

Usage: python bench/ab.py [--runs 4] [--seconds 6] old=../old new=. old-info=.:info
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ingest import measure, stripe_like_body, wrk_script  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("variants", nargs="+", help="name=CHECKOUT[:LEVEL]")
    args = parser.parse_args()
    variants = [v.split("=", 1) for v in args.variants]
    rates: dict[str, list[float]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory(prefix="relay-ab-") as tmp:
        script = wrk_script(stripe_like_body(), Path(tmp) / "post.lua")
        for run in range(args.runs):
            for name, spec in variants:
                checkout, _, level = spec.partition(":")
                target = "relay-full" if name.endswith("+deliver") else "relay-ingest"
                result = measure(
                    target, script, args.seconds, 2.0, Path(checkout).resolve(), level or None
                )
                rates[name].append(result.rps)
                print(f"run {run + 1} {name}: {result.rps:,.0f} req/s", flush=True)
    print(f"\n| variant | req/s (median of {args.runs}) | min – max | µs per event |")
    print("|---|---:|---:|---:|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median:,.0f} | {min(values):,.0f} – {max(values):,.0f} |"
            f" {1e6 / median:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
