"""The overview: health at a glance, from the per-minute rollup and the backlog's indexes
(never a scan of the event tables)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from relay.admin.console import health
from relay.admin.console.pages import Page, Pages
from relay.admin.surface import Surface
from relay.rows import IncidentRow
from relay.store import rollup

RECOVERED_SHOWN = 1800.0  # seconds a destination says it recovered after its incident


class Overview:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages
        self._surface = pages.surface

    def pages(self) -> list[Page]:
        return [Page("GET", "/ui/", self.overview, nav="Overview")]

    async def overview(self, request: web.Request) -> web.Response:
        """Each source and destination judged from its own numbers (health), what needs
        attention first, linked to its list."""
        now = time.time()
        rows = await self._surface.read(lambda r: r.minutes(now))
        backlog = await self._surface.read(lambda r: r.backlog())
        incidents = await destination_incidents(self._surface, now)
        per = rollup.series(rows, now)
        attention: list[dict[str, Any]] = []
        sources = self._sources(per)
        destinations = self._destinations(per, backlog, now, incidents)
        for kind, rows_of in (("source", sources), ("destination", destinations)):
            for row in rows_of:
                if row["health"].level != "ok":
                    attention.append({"kind": kind, "name": row["name"], "health": row["health"]})
        attention.sort(key=lambda a: -health.LEVELS[a["health"].level])
        received = [0.0] * rollup.WINDOW
        for (kind, _), s in per.items():
            if kind == rollup.SOURCE:
                received = [a + b for a, b in zip(received, s.of("received"), strict=True)]
        context = {
            "sources": sources,
            "destinations": destinations,
            "attention": attention,
            "chart": events_chart(received, now),
        }
        if request.query.get("fragment"):
            return self._pages.fragment("_overview.html", **context)
        return self._pages.render(request, "overview.html", "Overview", "/ui/", **context)

    def _sources(self, per: dict[tuple[str, str], rollup.Series]) -> list[dict[str, Any]]:
        names = {n for kind, n in per if kind == rollup.SOURCE}
        rows = []
        for name in sorted(set(self._surface.sources()) | names):
            s = per.get((rollup.SOURCE, name), rollup.Series())
            rows.append(
                {
                    "name": name,
                    "health": health.source_health(name, s),
                    "received": s.total("received"),
                    "rejected": s.total("rejected"),
                    "duplicates": self._surface.duplicates(name),
                    "spark": health.chart([float(v) for v in s.of("received")]),
                }
            )
        return rows

    def _destinations(
        self,
        per: dict[tuple[str, str], rollup.Series],
        backlog: dict[str, tuple[int, float, int]],
        now: float,
        incidents: dict[str, IncidentRow],
    ) -> list[dict[str, Any]]:
        groups = self._surface.agents()
        rows = []
        for view in self._surface.destinations():
            s = per.get((rollup.DESTINATION, view.name), rollup.Series())
            pending, oldest_at, dead = backlog.get(view.name, (0, 0.0, 0))
            oldest = now - oldest_at if pending else None
            group = view.config.agent
            offline = (
                group if group is not None and not groups.get(group, {}).get("connected") else None
            )
            verdict = health.destination_health(
                view.name,
                s,
                pending,
                oldest,
                view.paused is not None,
                view.circuit,
                offline,
                incidents.get(view.name),
            )
            delivered, died, retried = s.total("delivered"), s.total("dead"), s.total("retried")
            attempts = delivered + died + retried
            rows.append(
                {
                    "name": view.name,
                    "health": verdict,
                    "delivered": delivered,
                    "died": died,
                    "success": f"{100 * delivered / attempts:.0f}%" if attempts else "-",
                    "pending": pending,
                    "dead": dead,
                    "oldest": oldest,
                    "p95": _seconds(s.p95()),
                    "spark": health.chart([float(v) for v in s.of("delivered")]),
                    # Failed attempts a minute: those that died and those to be retried.
                    "failures": health.chart(
                        [float(a + b) for a, b in zip(s.of("dead"), s.of("retried"), strict=True)]
                    ),
                    "latency": health.chart(s.p95_per_minute()),
                }
            )
        return rows


async def destination_incidents(surface: Surface, now: float) -> dict[str, IncidentRow]:
    """Each destination's open incident of deliveries dying, or the one that resolved in
    the last ``RECOVERED_SHOWN`` seconds: what the overview and the lists filtered to that
    destination tell (a backlog or the like is judged from the numbers)."""
    found = await surface.read(lambda r: r.incidents("resolved", 100) + r.incidents("open", 100))
    incidents: dict[str, IncidentRow] = {}
    for i in found:  # the resolved ones first, newest first: an open one wins
        if i["kind"] != "dead":
            continue
        if i["status"] == "open":
            incidents[i["subject"]] = i
        elif (i["resolved_at"] or 0) >= now - RECOVERED_SHOWN:
            incidents.setdefault(i["subject"], i)
    return incidents


async def incident_note(surface: Surface, destination: str | None) -> dict[str, Any] | None:
    """For a list filtered to one destination: its incident in a line, linked to its row
    on the alerts page."""
    if not destination:
        return None
    incident = (await destination_incidents(surface, time.time())).get(destination)
    if incident is None:
        return None
    line = health.incident_line(incident)
    return {"id": incident["id"], "status": incident["status"], "line": line}


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"≤ {value * 1000:.0f} ms" if value < 1 else f"≤ {value:g} s"


def events_chart(events: list[float], now: float) -> dict[str, Any]:
    """The geometry of the overview's events-per-minute chart: bars, a y axis with its
    peak and unit, and an x axis of clock times (UTC) every 15 minutes."""
    left, bottom, width, height = 44, 18, 600, 120
    plot_w, plot_h = width - left, height - bottom
    top = max(events) or 1.0
    step = plot_w / len(events)
    bars = [
        {
            "x": f"{left + i * step:.1f}",
            "y": f"{plot_h - v / top * plot_h:.1f}",
            "w": f"{max(step - 1, 1):.1f}",
            "h": f"{v / top * plot_h:.1f}",
        }
        for i, v in enumerate(events)
        if v
    ]
    first = (rollup.minute_of(now) - len(events) + 1) * 60
    ticks = [
        {
            "x": f"{left + i * step:.1f}",
            "label": time.strftime("%H:%M", time.gmtime(first + i * 60)),
        }
        for i in range(0, len(events), 15)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "plot_h": plot_h,
        "bars": bars,
        "peak": f"{top:g}",
        "ticks": ticks,
        "total": f"{sum(events):g}",
    }
