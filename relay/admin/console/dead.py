"""Dead letters: deliveries that will not be tried again, filtered, grouped and counted, each
page with the forms that replay exactly what it shows."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

from aiohttp import web

from relay import filters, incidents
from relay.admin.console.overview import incident_note
from relay.admin.console.pages import PAGE, Page, Pages, form_id, paged
from relay.records import DeadFilter
from relay.rows import DeadGroup, DeadRow
from relay.store import clauses

FIELDS = ("destination", "source", "type", "error", "since", "until", "key", "q")
# What the matching ones can be grouped by: a column, or the failure class of their last
# attempt (relay.incidents.failure_class; a class is not a filter, so its rows are not links).
GROUPS = (*clauses.DEAD_GROUPS, "class")


class Dead:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages
        self._surface = pages.surface

    def pages(self) -> list[Page]:
        return [Page("GET", "/ui/dead", self.dead, nav="Dead letters")]

    async def dead(self, request: web.Request) -> web.Response:
        """A filter (relay.filters: destination, source, type, error, key, text, and
        From and Until on the time they died), pages of ``PAGE`` by delivery id, and how
        many match in all, with one form that replays exactly those."""
        q = request.query
        form = {k: q.get(k, "") for k in FIELDS}
        filled = {k: v for k, v in form.items() if v}
        problem = None
        rows: list[DeadRow] = []
        total, last_died = 0, None
        try:
            f = filters.dead(form)
            page = replace(f, before_id=filters.dead(q).before_id)
            rows = await self._surface.read(lambda r: r.dead(page, PAGE + 1))  # more after?
            total, last_died = await self._surface.read(lambda r: r.dead_summary(f))
        except ValueError as exc:
            problem, f = str(exc), DeadFilter()
        rows, older = paged(q, rows, "delivery_id")
        by = q.get("group", "")
        by = by if by in GROUPS else ""
        grouped: list[DeadGroup] = []
        if by == "class":
            grouped = incidents.by_class(await self._surface.read(lambda r: r.dead_outcomes(f)))
        elif by:
            grouped = await self._surface.read(lambda r: r.dead_grouped(f, by))
            keep = {k: v for k, v in filled.items() if k != by}
            for g in grouped:
                if g["value"] is not None and by != "class":
                    g["link"] = "/ui/dead?" + urlencode(keep | {by: g["value"]})
        groups = await self._surface.read(lambda r: r.dead_groups())
        incident = await incident_note(self._surface, form["destination"])
        return self._pages.render(
            request,
            "dead.html",
            "Dead letters",
            "/ui/dead",
            groups=[g | {"form_id": form_id()} for g in groups],
            by=by,
            grouped=grouped,
            group_links={k: "/ui/dead?" + urlencode(filled | {"group": k}) for k in GROUPS},
            rows=rows,
            q=form,
            matching={
                "count": total,
                "last_died": last_died,
                "since": f.died_since,
                "until": f.died_until,
                "filtered": any(form.values()),
            },
            problem=problem,
            older=older,
            back="/ui/dead?" + urlencode(filled),
            form_id=form_id(),
            matching_id=form_id(),
            incident=incident,
        )
