"""The public listener: ``POST /in/<source>``, ``GET /healthz``, ``GET /readyz``.

A request is answered 2xx only after its event, with one delivery per routed destination,
is committed (see ``relay.store``). The answer never waits for delivery.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from relay.config import Settings
from relay.errors import StorageUnavailable
from relay.extract import Parsed, extract
from relay.ids import new_event_id
from relay.store import NewEvent, Writer
from relay.verify import Inbound, Rejected, SourceConfig, Verifier

log = logging.getLogger("relay.ingress")


@dataclass(frozen=True, slots=True)
class Source:
    """A source as the handler needs it: built once at start."""

    config: SourceConfig
    verifier: Verifier
    destinations: tuple[str, ...]


def _json(status: int, payload: dict[str, object], **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers or None,
    )


class Ingress:
    def __init__(
        self, settings: Settings, writer: Writer, problems: Callable[[], list[str]]
    ) -> None:
        self._writer = writer
        self._problems = problems
        self._max_body = settings.server.max_body_size
        self._read_timeout = settings.server.read_timeout
        self._max_headers = settings.server.max_header_size
        self._sources = {
            s.name: Source(s, s.build_verifier(), settings.routes_for(s.name))
            for s in settings.sources
        }

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body, handler_args={})
        app.router.add_post("/in/{source}", self.receive)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        if sum(len(k) + len(v) + 4 for k, v in request.raw_headers) > self._max_headers:
            return _json(431, {"error": "request headers too large"}, Connection="close")
        source = self._sources.get(request.match_info["source"])
        if source is None:
            return _json(404, {"error": "unknown source"})
        length = request.content_length
        if length is not None and length > self._max_body:
            return self._too_large()
        try:
            async with asyncio.timeout(self._read_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        except TimeoutError:
            return _json(408, {"error": "body not received in time"}, Connection="close")
        now = time.time()
        headers = request.headers
        inbound = Inbound(request.method, str(request.url), headers, body, request.remote)
        try:
            source.verifier.verify(inbound, now)
        except Rejected as exc:
            log.warning(
                "event.rejected",
                extra={
                    "fields": {
                        "source": source.config.name,
                        "reason": exc.reason,
                        "remote": request.remote,
                    }
                },
            )
            return _json(401, {"error": exc.reason})
        parsed = Parsed(body)
        event = NewEvent(
            id=new_event_id(now),
            source=source.config.name,
            received_at=now,
            idempotency_key=extract(source.config.idempotency_key, headers, parsed),
            event_type=extract(source.config.event_type, headers, parsed),
            content_type=headers.get("Content-Type"),
            remote_addr=request.remote,
            headers=json.dumps(list(headers.items())),
            body=body,
            destinations=source.destinations,
        )
        try:
            stored = await self._writer.ingest(event)
        except StorageUnavailable:
            return _json(503, {"error": "cannot store events right now"}, **{"Retry-After": "5"})
        extra = {"X-Relay-Event-Id": stored.event_id}
        if stored.duplicate:
            extra["X-Relay-Duplicate"] = "true"
        return _json(200, {"id": stored.event_id, "duplicate": stored.duplicate}, **extra)

    def _too_large(self) -> web.Response:
        return _json(413, {"error": f"body larger than {self._max_body} bytes"}, Connection="close")

    async def healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        problems = self._problems()
        if problems:
            return _json(503, {"status": "not ready", "problems": problems})
        return _json(200, {"status": "ready"})
