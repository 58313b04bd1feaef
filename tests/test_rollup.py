"""The overview's judgement of each source and destination, from its own numbers in the
per-minute rollup (relay/store/rollup.py, judged in relay/admin/console/health.py): a
table of cases."""

from __future__ import annotations

from typing import Any

import pytest

from relay.admin.console import health
from relay.store import rollup
from relay.store.rollup import WINDOW, Series

NOW = 1_700_000_000.0


def per_minute(total: int, last: int = WINDOW) -> list[int]:
    """``total`` spread evenly over the window's last ``last`` minutes."""
    values = [0] * WINDOW
    for i in range(total):
        values[WINDOW - 1 - i % last] += 1
    return values


def series(**totals: int | tuple[int, int]) -> Series:
    s = Series()
    for metric, spec in totals.items():
        total, last = spec if isinstance(spec, tuple) else (spec, WINDOW)
        s.metrics[metric] = per_minute(total, last)
    return s


CASES = [
    # (what, series, pending, oldest seconds, paused, circuit, agent offline) -> level, link
    ("healthy", series(queued=100, delivered=100), 0, None, False, None, None, "ok", None),
    (
        "deliveries die",
        series(queued=20, delivered=17, dead=3),
        0,
        None,
        False,
        None,
        None,
        "bad",
        "/ui/dead?destination=d&since=10m",
    ),
    (
        "backlog grows",
        series(queued=(50, 10), delivered=(5, 10)),
        45,
        120.0,
        False,
        None,
        None,
        "warn",
        "/ui/events?destination=d&status=pending",
    ),
    (
        "backlog drains (big but shrinking)",
        series(queued=(10, 10), delivered=(40, 10)),
        900,
        200.0,
        False,
        None,
        None,
        "ok",
        None,
    ),
    (
        "backlog over an hour old",
        series(queued=(5, 10), delivered=(5, 10)),
        10,
        4000.0,
        False,
        None,
        None,
        "bad",
        "/ui/events?destination=d&status=pending",
    ),
    (
        "most attempts fail, retrying",
        series(queued=10, delivered=10, retried=40),
        0,
        None,
        False,
        None,
        None,
        "warn",
        "/ui/events?destination=d",
    ),
    (
        "a few retries are normal",
        series(queued=100, delivered=100, retried=3),
        0,
        None,
        False,
        None,
        None,
        "ok",
        None,
    ),
    (
        "paused: waiting is expected, not growth",
        series(queued=(50, 10)),
        50,
        4000.0,
        True,
        None,
        None,
        "warn",
        "/ui/destinations",
    ),
    ("circuit open", series(), 3, 10.0, False, "open", None, "bad", "/ui/destinations#d"),
    ("agent offline", series(), 0, None, False, None, "lan", "bad", "/ui/destinations#d"),
]


@pytest.mark.parametrize(
    ("what", "s", "pending", "oldest", "paused", "circuit", "offline", "level", "link"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_destination_health(
    what: str,
    s: Series,
    pending: int,
    oldest: float | None,
    paused: bool,
    circuit: str | None,
    offline: str | None,
    level: str,
    link: str | None,
) -> None:
    verdict = health.destination_health("d", s, pending, oldest, paused, circuit, offline)
    assert (verdict.level, verdict.link) == (level, link), verdict.reasons
    assert bool(verdict.reasons) == (level != "ok")


def test_the_worst_reason_decides_the_link_and_every_reason_is_kept() -> None:
    s = series(queued=(50, 10), delivered=(5, 10), dead=2)
    verdict = health.destination_health("d", s, 45, 120.0, False, None, None)
    assert verdict.level == "bad"
    assert verdict.link == "/ui/dead?destination=d&since=10m"
    assert len(verdict.reasons) == 2


@pytest.mark.parametrize(
    ("received", "rejected", "level"),
    [(100, 0, "ok"), (100, 3, "ok"), (0, 12, "bad"), (4, 20, "warn"), (0, 2, "ok")],
)
def test_source_health(received: int, rejected: int, level: str) -> None:
    verdict = health.source_health("s", series(received=received, rejected=rejected))
    assert verdict.level == level
    if level != "ok":
        assert verdict.link == "/ui/rejections?source=s"


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, None),
        ({0: 100}, 0.005),
        ({0: 94, 5: 6}, 0.25),  # 6% beyond 250 ms: the 95th falls in that bucket
        ({0: 96, 5: 4}, 0.005),
        ({len(rollup.LATENCY_BOUNDS): 1}, 60.0),  # beyond the last bound reads as it
    ],
)
def test_p95_is_the_bound_of_the_bucket_holding_it(
    counts: dict[int, int], expected: float | None
) -> None:
    histogram = [0] * (len(rollup.LATENCY_BOUNDS) + 1)
    for i, n in counts.items():
        histogram[i] = n
    assert rollup.p95(histogram) == expected


def test_bucket_bounds_are_inclusive() -> None:
    assert rollup.bucket(0.005) == 0
    assert rollup.bucket(0.0051) == 1
    assert rollup.bucket(1e9) == len(rollup.LATENCY_BOUNDS)


def test_series_places_rows_by_minute_and_drops_older_ones() -> None:
    now_minute = rollup.minute_of(NOW)
    rows = [
        (now_minute, "destination", "d", "delivered", 4),
        (now_minute - 59, "destination", "d", "delivered", 2),
        (now_minute - 60, "destination", "d", "delivered", 99),  # outside the window
        (now_minute, "destination", "d", "lat3", 4),
    ]
    s = rollup.series(rows, NOW)[("destination", "d")]
    assert (s.of("delivered")[0], s.of("delivered")[-1]) == (2, 4)
    assert s.total("delivered") == 6
    assert s.p95_per_minute()[-1] == rollup.LATENCY_BOUNDS[3]
    assert s.p95_per_minute()[0] is None


def test_a_sparkline_breaks_where_a_minute_has_no_value() -> None:
    c = health.chart([1.0, 2.0, None, 4.0])
    assert len(c["lines"]) == 2
    assert c["peak"] == 4.0


def incident(status: str, resolved_at: float | None = None, left: int | None = None) -> Any:
    return {
        "id": 1,
        "subject": "d",
        "kind": "dead",
        "status": status,
        "since": 1_700_000_000.0 - 240,  # 22:09 UTC
        "last_failure": 1_700_000_000.0 - 60,
        "resolved_at": resolved_at,
        "failures": 36,
        "dominant": "HTTP 5xx",
        "counts": {"HTTP 5xx": 36},
        "samples": {"HTTP 5xx": {"status": 500, "body": "upstream down", "event_id": "e1"}},
        "left_to_replay": left,
    }


def test_an_open_incident_says_why_and_since_when() -> None:
    s = series(queued=20, delivered=10, dead=10)
    verdict = health.destination_health("d", s, 0, None, False, None, None, incident("open"))
    assert (verdict.level, verdict.link) == ("bad", "/ui/dead?destination=d")
    assert verdict.reasons[0] == "failing since 22:09: HTTP 5xx (HTTP 500 upstream down)"


def test_a_destination_that_recovered_is_green_at_once_and_says_so() -> None:
    """Issue 33: billing stayed red for an hour after it recovered (the colour came from
    the last hour's deaths); its incident resolved is green, with when and what is left."""
    s = series(queued=20, delivered=10, dead=10)  # the outage's deaths, minutes ago
    done = incident("resolved", 1_700_000_000.0 - 10, left=3)
    verdict = health.destination_health("d", s, 0, None, False, None, None, done)
    assert (verdict.level, verdict.reasons) == ("ok", ())
    assert verdict.note == "recovered at 22:13, 3 left to replay"


def test_deaths_older_than_the_recent_minutes_leave_it_green() -> None:
    s = Series()
    s.metrics["dead"] = [3] + [0] * (WINDOW - 1)  # an hour ago
    s.metrics["delivered"] = [0] * (WINDOW - 1) + [5]
    verdict = health.destination_health("d", s, 0, None, False, None, None)
    assert verdict.level == "ok"
