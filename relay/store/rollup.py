"""The per-minute rollup behind the overview: counts kept as events are committed and
attempts finish, so the console's health figures never scan the event tables.

A writer's transaction tallies what it stores (``Tally``) and adds the counts to the
``minutes`` table in the same transaction, so they agree with the rows they count: one row
per (minute, source or destination, metric). Received → delivered latency is kept as a
histogram (one metric per bucket, ``lat0`` …), from which a minute's or an hour's p95 is
read back to the bucket's upper bound. Pure functions here turn the rows back into series;
what the console makes of them (health, charts) is relay/admin/console/health.py.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

# Upper bounds of the latency buckets, in seconds; the last bucket has none.
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
KEEP_MINUTES = 7 * 24 * 60  # the rollup keeps a week
WINDOW = 60  # minutes the overview shows
TREND = 10  # minutes over which a backlog's growth is judged

SOURCE, DESTINATION = "source", "destination"


def minute_of(stamp: float) -> int:
    return int(stamp // 60)


def bucket(seconds: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS, seconds)


class Tally:
    """What one transaction adds to the rollup."""

    def __init__(self) -> None:
        self.counts: dict[tuple[int, str, str, str], int] = defaultdict(int)

    def received(self, source: str, at: float, destinations: tuple[str, ...]) -> None:
        minute = minute_of(at)
        self.counts[(minute, SOURCE, source, "received")] += 1
        for name in destinations:
            self.counts[(minute, DESTINATION, name, "queued")] += 1

    def rejected(self, source: str, at: float) -> None:
        self.counts[(minute_of(at), SOURCE, source, "rejected")] += 1

    def finished(self, destination: str, state: str, queued_at: float, at: float) -> None:
        """An attempt's outcome, as applied (a stale one is not counted: see the writers)."""
        minute = minute_of(at)
        if state == "delivered":
            self.counts[(minute, DESTINATION, destination, "delivered")] += 1
            lat = f"lat{bucket(max(0.0, at - queued_at))}"
            self.counts[(minute, DESTINATION, destination, lat)] += 1
        elif state == "dead":
            self.counts[(minute, DESTINATION, destination, "dead")] += 1
        else:
            self.counts[(minute, DESTINATION, destination, "retried")] += 1

    def rows(self) -> list[tuple[int, str, str, str, int]]:
        return [(*key, n) for key, n in self.counts.items()]


def p95(histogram: list[int]) -> float | None:
    """The upper bound of the bucket holding the 95th percentile (None: no deliveries); the
    last bucket, which has no bound, reads as its lower one."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = 0.95 * total
    seen = 0
    for i, n in enumerate(histogram):
        seen += n
        if seen >= rank:
            return LATENCY_BOUNDS[min(i, len(LATENCY_BOUNDS) - 1)]
    return LATENCY_BOUNDS[-1]


@dataclass
class Series:
    """One source's or destination's last ``WINDOW`` minutes, oldest first."""

    metrics: dict[str, list[int]] = field(default_factory=dict)
    latency: list[list[int]] = field(default_factory=list)  # per minute, per bucket

    def of(self, metric: str) -> list[int]:
        return self.metrics.get(metric, [0] * WINDOW)

    def total(self, metric: str, last: int = WINDOW) -> int:
        return sum(self.of(metric)[-last:])

    def p95_per_minute(self) -> list[float | None]:
        return [p95(h) for h in self.latency] if self.latency else [None] * WINDOW

    def p95(self) -> float | None:
        if not self.latency:
            return None
        return p95([sum(col) for col in zip(*self.latency, strict=True)])


def series(rows: list[tuple[int, str, str, str, int]], now: float) -> dict[tuple[str, str], Series]:
    """The rollup's rows for the window ending at ``now``, per (kind, name)."""
    first = minute_of(now) - WINDOW + 1
    found: dict[tuple[str, str], Series] = {}
    for minute, kind, name, metric, n in rows:
        i = minute - first
        if not 0 <= i < WINDOW:
            continue
        s = found.setdefault((kind, name), Series())
        if metric.startswith("lat"):
            if not s.latency:
                s.latency = [[0] * (len(LATENCY_BOUNDS) + 1) for _ in range(WINDOW)]
            s.latency[i][int(metric[3:])] += n
        else:
            s.metrics.setdefault(metric, [0] * WINDOW)[i] += n
    return found
