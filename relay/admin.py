"""The admin API: its own listener (``[admin] listen``, 127.0.0.1 or a Unix socket), bearer
token auth, JSON. The public ingress listener never serves any of it.

Reads run on a fresh read-only SQLite connection in a thread, so a heavy search never
delays the scheduler's reads or the writer. Changes (replay, pause, resume, prune) go
through the writer and the scheduler, which act at once. ``relay/openapi.json`` (served at
``GET /api/openapi.json``) describes every endpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from relay import inspect
from relay.ui import Console
from relay.verify.base import any_equal, header_bytes

if TYPE_CHECKING:
    from relay.app import Relay
    from relay.config import AdminConfig

log = logging.getLogger("relay.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(payload).encode(), content_type="application/json"
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class Admin:
    def __init__(self, relay: Relay, token: bytes) -> None:
        self._relay = relay
        self._token = token
        self._expected = [b"Bearer " + token]

    def app(self) -> web.Application:
        console = Console(self._relay, self._token)
        app = web.Application(middlewares=[self._auth, console.guard], client_max_size=1024 * 1024)
        console.routes(app)
        r = app.router
        r.add_get("/metrics", self.metrics)
        r.add_get("/api/openapi.json", self.openapi)
        r.add_get("/api/events", self.events)
        r.add_get("/api/events/{id}", self.event)
        r.add_get("/api/dead", self.dead)
        r.add_post("/api/replay", self.replay)
        r.add_get("/api/destinations", self.destinations)
        r.add_post("/api/destinations/{name}/pause", self.pause)
        r.add_post("/api/destinations/{name}/resume", self.resume)
        r.add_get("/api/stats", self.stats)
        r.add_get("/api/rejections", self.rejections)
        r.add_post("/api/reload", self.reload)
        r.add_post("/api/prune", self.prune)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/ui" or request.path.startswith("/ui/"):
            return await handler(request)  # the console has its own sign-in (a cookie)
        given = header_bytes(request.headers.get("Authorization", ""))
        if not any_equal(self._expected, [given]):
            response = _error(401, "missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="relay admin"'
            return response
        try:
            return await handler(request)
        except ValueError as exc:  # a bad filter value: the caller's to fix
            return _error(400, str(exc))

    async def _read(self, work: Callable[[Any], Any]) -> Any:
        return await inspect.read_in_thread(self._relay.settings.storage.path, work)

    # -- reads ------------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        f = inspect.EventFilter(
            source=q.get("source"),
            event_type=q.get("type"),
            status=q.get("status"),
            since=inspect.since_to_time(q.get("since")),
            until=inspect.since_to_time(q.get("until")),
            key=q.get("key"),
            text=q.get("q"),
            before=q.get("before"),
            limit=_int(q.get("limit"), 50),
        )
        rows = await self._read(lambda c: inspect.list_events(c, f))
        following = rows[-1]["id"] if len(rows) == f.limit else None
        return _json({"events": rows, "next_before": following})

    async def event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        found = await self._read(lambda c: inspect.show_event(c, event_id))
        if found is None:
            return _error(404, f"no event {event_id}")
        return _json(found)

    async def dead(self, request: web.Request) -> web.Response:
        f = _dead_filter(dict(request.query))
        limit = _int(request.query.get("limit"), 50)
        rows = await self._read(lambda c: inspect.list_dead(c, f, limit))
        total = await self._read(lambda c: inspect.count_dead(c, f))
        return _json({"dead": rows, "total": total})

    async def destinations(self, request: web.Request) -> web.Response:
        health = await self._read(lambda c: inspect.stats(c)["destinations"])
        out = []
        for name, lane in self._relay.scheduler.lanes.items():
            d = lane.destination
            out.append(
                {
                    "name": name,
                    "url": d.url,
                    "paused": lane.paused,
                    "circuit": lane.circuit.state if lane.circuit else None,
                    "max_concurrency": d.max_concurrency,
                    "rate_limit": d.rate_limit.model_dump() if d.rate_limit else None,
                    "ordering": d.ordering,
                    **health.get(name, {"pending": 0, "dead": 0}),
                }
            )
        return _json({"destinations": out})

    async def stats(self, request: web.Request) -> web.Response:
        return _json(await self._read(inspect.stats))

    async def rejections(self, request: web.Request) -> web.Response:
        source = request.query.get("source")
        limit = _int(request.query.get("limit"), 50)

        def work(conn: Any) -> list[dict[str, Any]]:
            sql = "SELECT at, source, status, reason, remote_addr, method, headers FROM rejections"
            params: list[Any] = []
            if source:
                sql += " WHERE source = ?"
                params.append(source)
            rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
            keys = ("at", "source", "status", "reason", "remote_addr", "method", "headers")
            return [
                {**dict(zip(keys, row, strict=True)), "headers": json.loads(row[6])} for row in rows
            ]

        return _json({"rejections": await self._read(work)})

    async def metrics(self, request: web.Request) -> web.Response:
        await self._relay.refresh_gauges()
        body, content_type = self._relay.metrics.exposition()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def openapi(self, request: web.Request) -> web.Response:
        text = resources.files("relay").joinpath("openapi.json").read_text(encoding="utf-8")
        return web.Response(text=text, content_type="application/json")

    # -- changes ----------------------------------------------------------------------------

    async def replay(self, request: web.Request) -> web.Response:
        """Body: {"delivery_id": N} | {"event_id": "evt_…"} | {"filter": {…}}, and
        optionally "dry_run": true. Each replay is a new delivery; the dead one stays."""
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body must be JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        dry = bool(body.get("dry_run"))
        extra: tuple[str, list[Any]] | None
        if "delivery_id" in body:
            f = inspect.DeadFilter(include_replayed=True)
            extra = ("d.id = ?", [_int(str(body["delivery_id"]), 0)])
        elif "event_id" in body:
            f = inspect.DeadFilter()
            extra = ("d.event_id = ?", [str(body["event_id"])])
        elif isinstance(body.get("filter"), dict):
            f = _dead_filter(body["filter"])
            extra = None
        else:
            return _error(400, 'give "delivery_id", "event_id" or "filter"')
        count = await self._relay.replay(f, extra, dry_run=dry)
        return _json({"replayed": 0 if dry else count, "matched": count, "dry_run": dry})

    async def pause(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._relay.scheduler.lanes:
            return _error(404, f"no destination {name}")
        await self._relay.scheduler.pause(name)
        return _json({"destination": name, "paused": True})

    async def resume(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._relay.scheduler.lanes:
            return _error(404, f"no destination {name}")
        await self._relay.scheduler.resume(name)
        return _json({"destination": name, "paused": False})

    async def reload(self, request: web.Request) -> web.Response:
        problem = await self._relay.reload()
        if problem is not None:
            return _json({"reloaded": False, "error": problem}, 409)
        return _json({"reloaded": True})

    async def prune(self, request: web.Request) -> web.Response:
        counts = await self._relay.prune_now()
        return _json({"deleted": counts})


def _int(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None


def _dead_filter(q: dict[str, Any]) -> inspect.DeadFilter:
    return inspect.DeadFilter(
        destination=q.get("destination") or None,
        source=q.get("source") or None,
        event_type=q.get("type") or None,
        since=inspect.since_to_time(q.get("since")),
        until=inspect.since_to_time(q.get("until")),
        error=q.get("error") or None,
    )


async def start_admin(relay: Relay, token: bytes, config: AdminConfig) -> web.AppRunner:
    runner = web.AppRunner(Admin(relay, token).app(), access_log=None, handle_signals=False)
    await runner.setup()
    site: web.BaseSite
    listen = config.listen
    if listen.startswith("unix:"):
        path = listen[5:]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a socket left by a killed relay
        site = web.UnixSite(runner, path)
        await site.start()
        os.chmod(path, 0o600)
    else:
        from relay.config import split_address

        host, port = split_address(listen)
        context = config.tls.context() if config.tls is not None else None
        site = web.TCPSite(runner, host, port, ssl_context=context)
        await site.start()
    bound = runner.addresses[0]
    address = f"unix:{bound}" if isinstance(bound, str) else f"{bound[0]}:{bound[1]}"
    log.info("admin.ready", extra={"fields": {"listen": address}})
    return runner
