"""The admin API: bearer token auth, JSON. Served by the admin listener (``relay.admin``);
the public ingress listener never serves any of it.

Reads run on a fresh read-only connection in a thread (``Surface.read``), so a heavy search
never delays the scheduler or the writer. Changes (replay, pause, resume, prune, reload)
go through the ``Surface``, which acts at once. ``relay/openapi.json`` (served at
``GET /api/openapi.json``) describes every endpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from relay import filters
from relay.admin import inputs
from relay.admin.surface import Surface, Who
from relay.errors import KeyReused, RelayError
from relay.people import People, Person, refusal
from relay.records import ReplaySelection, since_to_time
from relay.verify.base import header_bytes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(payload).encode(), content_type="application/json"
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


# The action each changing handler is (relay.people.NEEDS); every other one reads.
ACTIONS = {
    "replay": "replay",
    "catch_up": "catch-up",
    "pause": "pause",
    "resume": "resume",
    "reload": "reload",
    "prune": "prune",
    "backup": "backup",
}


class Api:
    def __init__(self, surface: Surface, people: Callable[[], People]) -> None:
        self._surface = surface
        self._people = people

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/metrics", self.metrics)
        r.add_get("/api/openapi.json", self.openapi)
        r.add_get("/api/events", self.events)
        r.add_get("/api/events/{id}", self.event)
        r.add_get("/api/dead", self.dead)
        r.add_post("/api/replay", self.replay)
        r.add_post("/api/catch-up", self.catch_up)
        r.add_get("/api/destinations", self.destinations)
        r.add_post("/api/destinations/{name}/pause", self.pause)
        r.add_post("/api/destinations/{name}/resume", self.resume)
        r.add_get("/api/stats", self.stats)
        r.add_get("/api/rejections", self.rejections)
        r.add_post("/api/reload", self.reload)
        r.add_post("/api/prune", self.prune)
        r.add_get("/api/audit", self.audit)
        r.add_get("/api/agents", self.agents)
        r.add_post("/api/backup", self.backup)

    @web.middleware
    async def auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The bearer token names a person (relay.people); their role decides whether they
        may do what the request asks: 401 without a known token, 403 (with the reason)
        beyond the role."""
        if request.path == "/ui" or request.path.startswith("/ui/"):
            return await handler(request)  # the console has its own sign-in (a cookie)
        given = header_bytes(request.headers.get("Authorization", ""))
        person = None
        if given.startswith(b"Bearer "):
            person = self._people().find(given[7:])
        if person is None:
            response = _error(401, "missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="relay admin"'
            return response
        route = request.match_info.route
        name = getattr(route.handler, "__name__", "") if route is not None else ""
        action = ACTIONS.get(name, "read")
        if not person.may(action):
            return _error(403, refusal(person, action))
        request[PERSON] = person
        try:
            return await handler(request)
        except ValueError as exc:  # a bad filter value: the caller's to fix
            return _error(400, str(exc))

    # -- reads ------------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        q = _query(request, "events")
        f = filters.events(q, filters.limit(q, 50))
        rows = await self._surface.read(lambda r: r.events(f))
        following = rows[-1]["id"] if len(rows) == f.limit else None
        return _json({"events": rows, "next_before": following})

    async def event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        found = await self._surface.read(lambda r: r.event(event_id))
        if found is None:
            return _error(404, f"no event {event_id}")
        return _json(found)

    async def dead(self, request: web.Request) -> web.Response:
        """Dead letters not replayed yet, newest first (``since``/``until``: when they
        died), a page at a time, and how many match in all."""
        q = _query(request, "dead")
        f, page = filters.dead(q), filters.limit(q, 50)
        rows = await self._surface.read(lambda r: r.dead(f, page))
        total = await self._surface.read(lambda r: r.count_dead(replace(f, before_id=None)))
        following = rows[-1]["delivery_id"] if len(rows) == page else None
        return _json({"dead": rows, "total": total, "next_before": following})

    async def destinations(self, request: web.Request) -> web.Response:
        health = await self._surface.read(lambda r: r.stats()["destinations"])
        out = []
        for view in self._surface.destinations():
            d, name = view.config, view.name
            out.append(
                {
                    "name": name,
                    "url": d.url,
                    "paused": view.paused,
                    "circuit": view.circuit,
                    "max_concurrency": d.max_concurrency,
                    "rate_limit": d.rate_limit.model_dump() if d.rate_limit else None,
                    "ordering": d.ordering,
                    **health.get(name, {"pending": 0, "dead": 0}),
                }
            )
        return _json({"destinations": out})

    async def stats(self, request: web.Request) -> web.Response:
        return _json(await self._surface.read(lambda r: r.stats()))

    async def rejections(self, request: web.Request) -> web.Response:
        q = _query(request, "rejections")
        t, page = filters.timed(q, "source"), filters.limit(q, 50)
        rows = await self._surface.read(
            lambda r: r.rejections(t.value, page, t.since, t.until, t.before)
        )
        following = rows[-1]["id"] if len(rows) == page else None
        return _json({"rejections": rows, "next_before": following})

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = await self._surface.metrics()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def openapi(self, request: web.Request) -> web.Response:
        text = resources.files("relay").joinpath("openapi.json").read_text(encoding="utf-8")
        return web.Response(text=text, content_type="application/json")

    # -- changes ----------------------------------------------------------------------------

    async def replay(self, request: web.Request) -> web.Response:
        """Body: a ``ReplayRequest`` (``relay.admin.inputs``): one of "event_id",
        "delivery_id" or "filter", and optionally "destination", "state", "again",
        "dry_run". An Idempotency-Key header makes it at most once: the same key again
        answers with the first answer and replays nothing."""
        body = inputs.parse(inputs.ReplayRequest, await request.read())
        key = inputs.header(request.headers.get("Idempotency-Key"), "Idempotency-Key")
        given = body.filter
        if body.event_id is None and body.delivery_id is None and given is None:
            return _error(400, 'give "event_id", "delivery_id" or "filter"')
        q = given or inputs.ReplayFilter()
        sel = ReplaySelection(
            event=body.event_id,
            delivery=body.delivery_id,
            source=q.source or None,
            event_type=q.type or None,
            since=since_to_time(q.since),
            until=since_to_time(q.until),
            error=q.error or None,
            key=q.key or None,
            text=q.text or None,
            state=body.state or q.state or "dead",
            destination=body.destination or q.destination or None,
            again=body.again,
        )
        digest = hashlib.sha256(body.model_dump_json(exclude={"dry_run"}).encode())
        try:
            answer = await self._surface.replay(
                sel, who(request), key, body.dry_run, digest.hexdigest()[:32]
            )
        except LookupError as exc:
            return _error(404, str(exc.args[0]))
        except KeyReused as exc:
            return _error(422, str(exc))
        response = _json(answer)
        if answer.get("repeated"):
            response.headers["Idempotent-Replayed"] = "true"
        return response

    async def catch_up(self, request: web.Request) -> web.Response:
        """Body: a ``CatchUpRequest``: fetch back what the provider sent in the window
        (relay.catchup). 200 with what was found; 502 with the provider's answer when it
        failed; 404 when the source has no catch_up."""
        body = inputs.parse(inputs.CatchUpRequest, await request.read())
        since = since_to_time(body.since)
        until = since_to_time(body.until) if body.until is not None else time.time()
        if since is None or until is None:
            return _error(400, "since and until: RFC 3339, Unix seconds or a duration ago (2h)")
        try:
            report = await self._surface.catch_up(
                body.source, since, until, body.dry_run, who(request)
            )
        except LookupError as exc:
            return _error(404, str(exc.args[0]))
        except ValueError as exc:
            return _error(400, str(exc))
        return _json(report.as_dict(), 502 if report.error is not None else 200)

    async def pause(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not await self._surface.pause(name, "paused by an operator", who(request)):
            return _error(404, f"no destination {name}")
        return _json({"destination": name, "paused": True})

    async def resume(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not await self._surface.resume(name, who(request)):
            return _error(404, f"no destination {name}")
        return _json({"destination": name, "paused": False})

    async def agents(self, request: web.Request) -> web.Response:
        return _json({"agents": self._surface.agents()})

    async def audit(self, request: web.Request) -> web.Response:
        q = _query(request, "audit")
        t, page = filters.timed(q, "action"), filters.limit(q, 50)
        rows = await self._surface.read(
            lambda r: r.audit(t.since, page, t.until, t.before, t.value)
        )
        following = rows[-1]["id"] if len(rows) == page else None
        return _json({"audit": rows, "next_before": following})

    async def backup(self, request: web.Request) -> web.Response:
        """Body: {"path": "/var/backups/relay.db"}: a consistent copy, written by relay (on
        its machine, as its user), recorded in the audit trail."""
        path = inputs.parse(inputs.BackupRequest, await request.read()).path
        target = Path(path)
        try:
            size = await self._surface.read(lambda r: r.backup(target))
        except RelayError as exc:
            await self._surface.audit(who(request), "backup", path, {"error": str(exc)})
            return _error(409, str(exc))
        await self._surface.audit(who(request), "backup", path, {"bytes": size})
        return _json({"path": path, "bytes": size})

    async def reload(self, request: web.Request) -> web.Response:
        problem = await self._surface.reload(who(request))
        if problem is not None:
            return _json({"reloaded": False, "error": problem}, 409)
        return _json({"reloaded": True})

    async def prune(self, request: web.Request) -> web.Response:
        counts = await self._surface.prune(who(request))
        return _json({"deleted": counts})


def _query(request: web.Request, list_name: str) -> dict[str, str]:
    """The query string of a list, as the vocabulary names it (relay.filters); a field the
    list does not take is refused by name, not ignored."""
    extra = filters.unknown(request.query, list_name)
    if extra:
        takes = ", ".join(filters.LISTS[list_name])
        raise filters.FilterError(f"{extra[0]}: not a filter of this list (it takes {takes})")
    return dict(request.query)


PERSON = web.RequestKey("person", Person)


def who(request: web.Request) -> Who:
    """The audit trail's actor and origin for an API call: the person whose token it
    carries; from their address ('unix' for the socket), and what the CLI says runs it
    (X-Relay-Actor: cli:user@host) beside it."""
    transport = request.transport
    unix = transport is not None and isinstance(transport.get_extra_info("sockname"), str)
    origin = "unix" if unix else (request.remote or "-")
    via = inputs.header(request.headers.get("X-Relay-Actor"), "X-Relay-Actor", 100)
    return Who(request[PERSON].name, f"{origin} ({via})" if via else origin)
