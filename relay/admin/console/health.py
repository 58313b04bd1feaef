"""How the overview judges each source and destination, and draws its sparklines: pure
functions over the rollup's series (relay.store.rollup), with the list to look at for each
verdict."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from relay.rows import IncidentRow
from relay.store.rollup import TREND, Series

RECENT = 10  # minutes the colours are judged over: an outage that ended turns green soon


@dataclass(frozen=True)
class Health:
    level: str  # 'ok', 'warn' (look soon) or 'bad' (look now)
    reasons: tuple[str, ...]
    link: str | None = None  # the list that shows the trouble, with its filter
    note: str | None = None  # said while green: it recovered a moment ago


def _clock(stamp: float) -> str:
    return time.strftime("%H:%M", time.gmtime(stamp))


def _why(incident: IncidentRow) -> str:
    """An incident's class and its sample, in a few words."""
    sample = incident["samples"].get(incident["dominant"], {})
    said = sample.get("body") or sample.get("error") or ""
    status = f"HTTP {sample['status']} " if sample.get("status") else ""
    detail = f" ({status}{said[:60]})".rstrip() if (status or said) else ""
    return f"{incident['dominant']}{detail}"


def incident_line(incident: IncidentRow) -> str:
    """An incident in one line: why and since when, or when it recovered."""
    if incident["status"] == "open" or incident["resolved_at"] is None:
        return f"failing since {_clock(incident['since'])}: {_why(incident)}"
    left = incident["left_to_replay"] or 0
    return f"recovered at {_clock(incident['resolved_at'])}, {left} left to replay"


def destination_health(
    name: str,
    s: Series,
    pending: int,
    oldest_seconds: float | None,
    paused: bool,
    circuit: str | None,
    agent_offline: str | None = None,
    incident: IncidentRow | None = None,
) -> Health:
    """How a destination is doing, from its own numbers over the last ``RECENT`` minutes
    and its incident (relay.incidents): deliveries dying (with why and since when), the
    share of attempts that failed, a backlog that is old or growing. An incident that
    resolved is green, and says when it recovered and what is left to replay."""
    found: list[tuple[str, str, str]] = []  # (level, why, where to look)

    def worse(to: str, why: str, where: str) -> None:
        found.append((to, why, where))

    delivered, dead = s.total("delivered", RECENT), s.total("dead", RECENT)
    retried = s.total("retried", RECENT)
    attempts = delivered + dead + retried
    note = None
    if incident is not None and incident["status"] == "open":
        worse("bad", incident_line(incident), f"/ui/dead?destination={name}")
    elif incident is not None and incident["resolved_at"] is not None:
        note = incident_line(incident)
    elif dead:
        worse("bad", f"{dead} died in {RECENT} min", f"/ui/dead?destination={name}&since=10m")
    # What failed before it recovered is the incident's story, told by the note.
    if note is None and attempts >= 10 and (dead + retried) / attempts > 0.2:
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
    verdict = judged(found)
    return Health(verdict.level, verdict.reasons, verdict.link, note)


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
