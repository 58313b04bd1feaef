"""The per-minute rollup behind the overview: counts kept as events are committed and
attempts finish, so the console's health figures never scan the event tables.

A writer's transaction tallies what it stores (``Tally``) and adds the counts to the
``minutes`` table in the same transaction, so they agree with the rows they count: one row
per (minute, source or destination, metric). Received → delivered latency is kept as a
histogram (one metric per bucket, ``lat0`` …), from which a minute's or an hour's p95 is
read back to the bucket's upper bound. Pure functions here turn the rows back into series
and judge each destination's health; the SQL is in ``queries.sql``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Health:
    level: str  # 'ok', 'warn' (look soon) or 'bad' (look now)
    reasons: tuple[str, ...]
    link: str | None = None  # the list that shows the trouble, with its filter


def destination_health(
    name: str,
    s: Series,
    pending: int,
    oldest_seconds: float | None,
    paused: bool,
    circuit: str | None,
    agent_offline: str | None = None,
) -> Health:
    """How a destination is doing, from its own numbers: deliveries that died in the last
    hour, the share of attempts that failed, and a backlog that is old or growing."""
    found: list[tuple[str, str, str]] = []  # (level, why, where to look)

    def worse(to: str, why: str, where: str) -> None:
        found.append((to, why, where))

    delivered, dead, retried = s.total("delivered"), s.total("dead"), s.total("retried")
    attempts = delivered + dead + retried
    if dead:
        worse("bad", f"{dead} died in the last hour", f"/ui/dead?destination={name}&from=1h")
    if attempts >= 10 and (dead + retried) / attempts > 0.2:
        rate = 100 * delivered / attempts
        worse("warn", f"{rate:.0f}% of attempts succeeded", f"/ui/events?destination={name}")
    queued = s.total("queued", TREND)
    finished = s.total("delivered", TREND) + s.total("dead", TREND)
    if pending and queued > finished and not paused:
        growth = f"backlog {pending} growing by {queued - finished} in {TREND} min"
        worse("warn", growth, f"/ui/events?destination={name}&status=pending")
    if oldest_seconds is not None and oldest_seconds > 300 and not paused:
        level_for_age = "bad" if oldest_seconds > 3600 else "warn"
        worse(
            level_for_age,
            f"oldest pending waited {int(oldest_seconds // 60)} min",
            f"/ui/events?destination={name}&status=pending",
        )
    if circuit == "open":
        worse("bad", "circuit open: the receiver keeps failing", f"/ui/destinations#{name}")
    if agent_offline is not None:
        worse("bad", f"agent group {agent_offline} offline", f"/ui/destinations#{name}")
    if paused:
        worse("warn", "paused", "/ui/destinations")
    return judged(found)


LEVELS = {"ok": 0, "warn": 1, "bad": 2}


def judged(found: list[tuple[str, str, str]]) -> Health:
    """The worst level found, every reason, and the list for the worst one."""
    if not found:
        return Health("ok", ())
    worst = max(found, key=lambda f: LEVELS[f[0]])
    return Health(worst[0], tuple(why for _, why, _ in found), worst[2])


def source_health(name: str, s: Series) -> Health:
    """A source is in trouble when many of its requests are refused (a wrong secret)."""
    received, rejected = s.total("received"), s.total("rejected")
    if rejected and rejected >= max(5, received):
        level = "bad" if received == 0 else "warn"
        why = f"{rejected} refused, {received} accepted in the last hour"
        return judged([(level, why, f"/ui/rejections?source={name}")])
    return Health("ok", ())


def chart(values: list[float | None], width: int = 240, height: int = 40) -> dict[str, Any]:
    """A sparkline's geometry (a polyline's points and the peak the top stands for, 0 when
    there is nothing to show); a minute with no value breaks the line."""
    peak = max((v for v in values if v is not None), default=0.0)
    scale = peak or 1.0
    step = width / max(1, len(values) - 1)
    lines: list[str] = []
    run: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if run:
                lines.append(" ".join(run))
            run = []
            continue
        run.append(f"{i * step:.1f},{height - v / scale * height:.1f}")
    if run:
        lines.append(" ".join(run))
    return {"width": width, "height": height, "lines": lines, "peak": peak}
