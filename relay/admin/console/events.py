"""Events: the filtered list (and the live tail), and one event's page with its deliveries,
each attempt, and the request as relay would send it now."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlencode

from aiohttp import web

from relay import filters
from relay.admin.console import auth, outgoing
from relay.admin.console.overview import incident_note
from relay.admin.console.pages import PAGE, Page, Pages, form_id, paged, redirect
from relay.records import STATUSES, Claim, ReplaySelection
from relay.store import Reader, clauses

EVENT_ID = re.compile(r"evt_[0-9A-Za-z]{4,26}")  # relay's ids (relay.ids), or a start of one
FIELDS = ("source", "destination", "type", "status", "since", "until", "key", "q")


class Events:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages
        self._surface = pages.surface

    def pages(self) -> list[Page]:
        return [
            Page("GET", "/ui/events", self.events, nav="Events"),
            Page("GET", "/ui/events/{id}", self.event),
            Page("GET", "/ui/tail", self.events),
        ]

    async def _by_id(self, request: web.Request) -> str | None:
        """relay's own event id (or its start, as a table showed it) in the search: that
        event's id, when only one event has it."""
        for given in (request.query.get("key", ""), request.query.get("q", "")):
            prefix = given.strip().rstrip("…")
            if EVENT_ID.fullmatch(prefix):

                def starting(reader: Reader, start: str = prefix) -> list[str]:
                    return reader.event_ids_starting(start)

                found = await self._surface.read(starting)
                if len(found) == 1:
                    return found[0]
        return None

    async def events(self, request: web.Request) -> web.Response:
        found = await self._by_id(request)
        if found is not None:
            return redirect(f"/ui/events/{found}")
        q = request.query
        try:
            f = filters.events(q, PAGE + 1)  # one more: is there an older page?
            rows = await self._surface.read(lambda r: r.events(f))
            problem = None
        except ValueError as exc:
            rows, problem = [], str(exc)
        rows, older = paged(q, rows, "id")
        form = {k: q.get(k, "") for k in FIELDS}
        live = request.path == "/ui/tail"
        replayable = None
        # Delivered ones can be millions: counted for a replay only when asked (count=1).
        counted = ("dead", "unrouted", "delivered") if q.get("count") else ("dead", "unrouted")
        if problem is None and f.status in counted and not live:
            # The replay selection says exactly what the filter says (the live tail has none).
            sel = ReplaySelection(
                source=f.source,
                event_type=clauses.type_glob(f.event_type) if f.event_type else None,
                since=f.since,
                until=f.until,
                state=f.status or "dead",
                destination=f.destination,
                key=f.key,
                text=f.text,
            )
            who = auth.who(request)
            seen = await self._surface.replay(sel, who, dry_run=True)
            replayable = {"sel": sel, "count": int(seen["matched"]), "form_id": form_id()}
        filled = {k: v for k, v in form.items() if v}
        back_query = urlencode(filled)
        if live and q.get("fragment"):
            return self._pages.fragment("_events_table.html", rows=rows)
        return self._pages.render(
            request,
            "events.html",
            "Live tail" if live else "Events",
            "/ui/events",
            live=live,
            page=PAGE,
            back_query=back_query,
            fragment_query=urlencode(filled | {"fragment": "1"}),
            q=form,
            statuses=("", *STATUSES),
            rows=rows,
            problem=problem,
            older=older,
            replayable=replayable,
            incident=None if live else await incident_note(self._surface, form["destination"]),
            count_link=urlencode(dict(q) | {"count": "1"}),
            back="/ui/events?" + back_query,
        )

    async def event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        ev = await self._surface.read(lambda r: r.event(event_id))
        if ev is None:
            raise web.HTTPNotFound(text=f"no event {event_id}")
        if ev["encoding"] == "json":
            body = json.dumps(ev["body"], indent=2, ensure_ascii=False)
        else:
            body = str(ev["body"])
        replayed = {d["replay_of"] for d in ev["deliveries"] if d["replay_of"] is not None}
        views = {view.name: view for view in self._surface.destinations()}
        payload = await self._surface.payload(event_id) if ev["deliveries"] else None
        for d in ev["deliveries"]:
            view = views.get(d["destination"])
            if payload is None or view is None:
                continue  # a destination no longer configured: nothing to rebuild it from
            last = d["history"][-1] if d["history"] else None
            number = last["number"] if last else 1
            at = last["started_at"] if last else time.time()
            claim = Claim(d["id"], event_id, number, d["created_at"])
            d["request"] = outgoing.shown(view.config, payload, claim, at)
        # While a delivery is on its way, the page fetches its deliveries' states every 5 s
        # and replaces only those (not the page: an open "Copy as curl" stays open).
        pending = any(d["state"] == "pending" for d in ev["deliveries"])
        if request.query.get("fragment") == "deliveries":
            return self._pages.fragment(
                "_delivery_states.html", ev=ev, views=views, now=time.time(), refresh=pending
            )
        return self._pages.render(
            request,
            "event.html",
            ev["id"],
            "/ui/events",
            ev=ev,
            body=body,
            replayed=replayed,
            form_id=form_id(),
            views=views,
            now=time.time(),
            refresh=pending,
        )
