"""Lists of one kind of row, filtered by one field and From/Until, newest first, paged by id:
rejections, the audit trail; and the alerts page (its conditions, then the alerts sent)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from relay import filters
from relay.admin.console.pages import PAGE, Page, Pages, ago, paged
from relay.alerting import ALERT_SOURCE
from relay.records import EventFilter

Read = Callable[[Any, str | None, float | None, float | None, int | None], Any]


class Lists:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages
        self._surface = pages.surface

    def pages(self) -> list[Page]:
        return [
            Page("GET", "/ui/rejections", self.rejections, nav="Rejections"),
            Page("GET", "/ui/alerts", self.alerts, nav="Alerts"),
            Page("GET", "/ui/audit", self.audit, nav="Audit"),
        ]

    async def rejections(self, request: web.Request) -> web.Response:
        """Refused requests, newest first: a source, From/Until, pages by id."""
        return await self._timed_list(
            request,
            "source",
            lambda r, source, since, until, before: r.rejections(
                source, PAGE + 1, since, until, before
            ),
            "rejections.html",
            "Rejections",
        )

    async def audit(self, request: web.Request) -> web.Response:
        """Operators' actions, newest first: an action, From/Until, pages by id."""
        return await self._timed_list(
            request,
            "action",
            lambda r, action, since, until, before: r.audit(since, PAGE + 1, until, before, action),
            "audit.html",
            "Audit",
        )

    async def _timed_list(
        self, request: web.Request, field: str, read: Read, template: str, title: str
    ) -> web.Response:
        """``read(reader, field's value, since, until, before)`` reads PAGE + 1 rows."""
        q = request.query
        form = {k: q.get(k, "") for k in (field, "since", "until")}
        rows: list[dict[str, Any]] = []
        problem = None
        try:
            t = filters.timed(q, field)
            rows = await self._surface.read(lambda r: read(r, t.value, t.since, t.until, t.before))
        except ValueError as exc:
            problem = str(exc)
        rows, older = paged(q, rows, "id")
        return self._pages.render(
            request, template, title, request.path, rows=rows, q=form, problem=problem, older=older
        )

    async def alerts(self, request: web.Request) -> web.Response:
        """What raises an alert and where it goes (``[alerts]``), and the alerts sent: events
        of relay's own source, delivered like any other."""
        config = self._surface.alerts()
        conditions = []
        if config.dead:
            conditions.append(("dead", "deliveries died"))
        if config.backlog is not None:
            conditions.append(("backlog", f"oldest pending older than {ago(config.backlog)}"))
        if config.rejections is not None:
            conditions.append(("rejections", "a source refuses too large a share"))
        for source, quiet in sorted(config.quiet.items()):
            conditions.append(("quiet", f"{source} received nothing for {ago(quiet)}"))
        f = EventFilter(source=ALERT_SOURCE, limit=PAGE + 1, before=request.query.get("before"))
        rows = await self._surface.read(lambda r: r.events(f))
        rows, older = paged(request.query, rows, "id")
        # Open incidents first, then the last resolved ones, with how long each lasted.
        found = await self._surface.read(
            lambda r: r.incidents("open", PAGE) + r.incidents("resolved", PAGE)
        )
        now = time.time()
        incidents = [
            {
                **i,
                "lasted": (i["resolved_at"] or now) - i["since"],
                "sample": i["samples"].get(i["dominant"]),
            }
            for i in found
        ]
        return self._pages.render(
            request,
            "alerts.html",
            "Alerts",
            "/ui/alerts",
            config=config,
            conditions=conditions,
            every=ago(config.every),
            rows=rows,
            older=older,
            incidents=incidents,
        )
