"""The public listener: ``POST /in/<source>``, ``GET /healthz``, ``GET /readyz``.

A request is answered 2xx only after its event, with one delivery per routed destination,
is committed (see ``relay.store``). The answer never waits for delivery.

A request passes named steps, each of which may end it with an answer and its outcome
(``answers``): ``guards.admit`` (headers, source, address, rate, length), ``guards.read_body``,
the source's verifier (or its handshake), ``events.Builder.build`` and the store. The
outcome is counted as it is (relay_requests_total), never read back from the response.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from relay.agents import AgentHub
from relay.config import Settings
from relay.errors import StorageUnavailable
from relay.extract import Parsed, extract
from relay.ingress import answers
from relay.ingress.answers import Answer, Refusal, error, json_response
from relay.ingress.events import Builder
from relay.ingress.guards import Admitted, Limits, Source, admit, read_body
from relay.metrics import Metrics
from relay.records import NewEvent, Rejection, Stored
from relay.store import Store
from relay.verify import Inbound, Rejected
from relay.verify.base import acknowledgement_of, challenge_of, handshake_of, redacted

log = logging.getLogger("relay.ingress")

FETCHED_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
COUNTED = ("accepted", "duplicate", "rejected")  # what the alerts' rejection share sees


class NotAdmitted(Exception):
    """A fetched event the ingest path refused (storage full or down, a key too long …)."""


class Ingress:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        problems: Callable[[], Awaitable[list[str]]],
        metrics: Metrics | None = None,
        storage_full: Callable[[], bool] = lambda: False,
        observe: Callable[[str, bool, float], None] | None = None,
        agents: AgentHub | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic  # rate limits' time (a test holds it still)
        self._agents = agents
        self._observe = observe  # (source, refused, now): what the alerts count
        self._store = store
        self._metrics = metrics or Metrics()
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._sourced: dict[tuple[Any, str], Any] = {}
        self._storage_full = storage_full
        self._problems = problems
        self._max_body = settings.server.max_body_size
        self.unrouted = 0  # events stored that no route matched
        self.update(settings)

    def update(self, settings: Settings) -> None:
        """A (re)loaded config: new sources, routes and ordering, swapped in at once (a
        request in flight finishes with the source it started with)."""
        now = self._monotonic()
        self._sources = {s.name: Source.build(s, settings, now) for s in settings.sources}
        self._builder = Builder(settings)
        server = settings.server
        self._limits = Limits(
            server.max_header_size, self._max_body, server.read_timeout, server.trusted_proxies
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        expect = self.expect
        app.router.add_post("/in/{source}", self.receive, expect_handler=expect)
        app.router.add_get("/in/{source}", self.challenge, expect_handler=expect)
        app.router.add_get("/healthz", self.healthz, expect_handler=expect)
        app.router.add_get("/readyz", self.readyz, expect_handler=expect)
        if self._agents is not None:  # agents dial out to the public listener
            app.router.add_get("/agent/connect", self._agents.connect, expect_handler=expect)
        # Last: everything else, so no request reaches aiohttp's own 404/405 routes, whose
        # Expect handling answers 500 to odd bytes.
        app.router.add_route("*", "/{path:.*}", self.elsewhere, expect_handler=expect)
        return app

    async def elsewhere(self, request: web.Request) -> web.Response:
        if request.path.startswith("/in/") and request.method != "POST":
            return json_response(405, {"error": "use POST"}, Allow="POST")
        return json_response(404, {"error": "not found"})

    async def challenge(self, request: web.Request) -> web.Response:
        """A GET on a source: a provider's subscription check (Meta's), never an event."""
        admitted = admit(request, self._sources, self._limits, self._monotonic)
        if not isinstance(admitted, Admitted):
            return self._ended(request, admitted).response
        source, client = admitted.source, admitted.client
        inbound = Inbound(
            "GET",
            lambda: str(request.url),
            request.headers,
            b"",
            client,
            request.rel_url.raw_query_string,
        )
        shake = challenge_of(source.verifier, inbound)
        if shake is None:
            return json_response(405, {"error": "use POST"}, Allow="POST")
        if shake.status in (401, 403):
            reason = shake.body.decode("utf-8", "replace")
            return self._refuse(source, request, client, Refusal(shake.status, reason)).response
        return answers.of_handshake(shake)

    async def receive(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        answer = await self._receive(request)
        name = request.match_info["source"]
        if name in self._sources:
            counter, latency = self._series(name, answer.outcome)
            counter.inc()
            if answer.outcome in ("accepted", "duplicate"):
                latency.observe(time.monotonic() - started)
            if self._observe is not None and answer.outcome in COUNTED:
                self._observe(name, answer.outcome == "rejected", time.time())
        return answer.response

    async def _receive(self, request: web.Request) -> Answer:
        admitted = admit(request, self._sources, self._limits, self._monotonic)
        if not isinstance(admitted, Admitted):
            return self._ended(request, admitted)
        source, client = admitted.source, admitted.client
        body = await read_body(request, self._limits)
        if isinstance(body, Answer):
            return body
        now = time.time()
        headers = request.headers
        inbound = Inbound(
            request.method,
            lambda: str(request.url),
            headers,
            body,
            client,
            request.rel_url.raw_query_string,
        )
        try:
            source.verifier.verify(inbound, now)
        except Rejected as exc:
            return self._refuse(source, request, client, Refusal(401, exc.reason))
        shake = handshake_of(source.verifier, inbound)
        if shake is not None:
            return answers.handshake(shake)
        stored = await self._admit(source, headers, body, client, now)
        if isinstance(stored, Answer):
            return stored
        ack = acknowledgement_of(source.verifier, inbound)
        if ack is not None:
            response = answers.of_handshake(ack, answers.identity(stored[0]))
            return Answer(response, answers.stored_outcome(stored[0]))
        return answers.accepted(*stored)

    def _ended(self, request: web.Request, ended: Answer | Refusal) -> Answer:
        """A guard's answer; a refusal is logged and kept first."""
        if isinstance(ended, Answer):
            return ended
        source = self._sources[request.match_info["source"]]
        return self._refuse(source, request, ended.client, ended)

    async def _admit(
        self,
        source: Source,
        headers: Mapping[str, str],
        body: bytes,
        client: str | None,
        now: float,
        origin: str | None = None,
    ) -> tuple[Stored, bool] | Answer:
        """A verified request (or an object fetched from the provider's API) from its
        parsing on: built, committed. The stored event and whether it was a split batch,
        or the answer that refuses it."""
        if self._storage_full():
            return error(
                507, "unavailable", "storage limit reached; try later", **{"Retry-After": "60"}
            )
        built = self._builder.build(source, headers, body, client, now, origin)
        if isinstance(built, Answer):
            return built
        event, batch = built
        name = source.config.name
        if not any(e.destinations for e in (event, *event.items)):
            self.unrouted += 1
            self._per_source(self._metrics.unrouted, name).inc()
        try:
            stored = await self._store.ingest(event)
        except StorageUnavailable:
            return error(
                503, "unavailable", "cannot store events right now", **{"Retry-After": "5"}
            )
        stale = sum(1 for e in (event, *event.items) if e.stale)
        if stale:
            self._per_source(self._metrics.stale, name).inc(stale)
        _log_received(event, stored)
        return stored, batch

    async def admit_fetched(self, source_name: str, body: bytes) -> Stored:
        """An event fetched from its provider's API by catch-up (relay.catchup): the path of
        a verified request, marked ``origin = "catch-up"``, deduplicated by the source's
        key like any webhook. NotAdmitted says why it was not stored."""
        source = self._sources.get(source_name)
        if source is None:
            raise NotAdmitted(f"source {source_name} is not configured any more")
        if extract(source.config.idempotency_key, FETCHED_HEADERS, Parsed(body)) is None:
            # Without its key it could not be told from a webhook of the same event.
            raise NotAdmitted(f"no idempotency key ({source.config.idempotency_key}) in it")
        admitted = await self._admit(source, FETCHED_HEADERS, body, None, time.time(), "catch-up")
        if isinstance(admitted, Answer):
            status = admitted.response.status
            raise NotAdmitted(f"HTTP {status}: {answers.error_of(admitted.response)}")
        return admitted[0]

    def _refuse(
        self, source: Source, request: web.Request, client: str | None, refusal: Refusal
    ) -> Answer:
        """401 or 403 with a short reason; logged, and kept in the rejections table."""
        name, status, reason = source.config.name, refusal.status, refusal.reason
        log.warning(
            "event.rejected",
            extra={
                "fields": {"source": name, "status": status, "reason": reason, "remote": client}
            },
        )
        self._metrics.rejections.labels(name, reason).inc()
        headers = json.dumps(redacted(request.headers.items(), source.secret_headers))
        self._store.note_rejection(
            Rejection(time.time(), name, status, reason, client, request.method, headers)
        )
        return error(status, "rejected", reason)

    def _series(self, source: str, outcome: str) -> tuple[Any, Any]:
        """The metric children of a source and outcome, looked up once: .labels() on every
        request is measurable on the hot path."""
        key = (source, outcome)
        found = self._children.get(key)
        if found is None:
            m = self._metrics
            found = self._children[key] = (
                m.requests.labels(source, outcome),
                m.ack_seconds.labels(source),
            )
        return found

    def _per_source(self, metric: Any, source: str) -> Any:
        """A per-source counter's child, looked up once (as in _series)."""
        key = (metric, source)
        found = self._sourced.get(key)
        if found is None:
            found = self._sourced[key] = metric.labels(source)
        return found

    async def expect(self, request: web.Request) -> web.Response | None:
        """``Expect: 100-continue``: refuse a declared oversized body before it is sent.

        Replaces aiohttp's default handler, which answers 500 when the header's value is not
        valid UTF-8 (it echoes the value into its error text).
        """
        if request.headers.get("Expect", "").lower() != "100-continue":
            return json_response(417, {"error": "only Expect: 100-continue is supported"})
        length = request.content_length
        if length is not None and length > self._max_body:
            return answers.too_large(self._max_body).response
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response(200, {"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        problems = await self._problems()
        if problems:
            return json_response(503, {"status": "not ready", "problems": problems})
        return json_response(200, {"status": "ready"})


def _log_received(event: NewEvent, stored: Stored) -> None:
    # A line per event only at debug: at info, the formatting and the write to stdout
    # (journald) cost about 100 µs per event (docs/benchmarks.md).
    if not log.isEnabledFor(logging.DEBUG):
        return
    log.debug(
        "event.received",
        extra={
            "fields": {
                "event": stored.event_id,
                "source": event.source,
                "type": event.event_type,
                "key": event.idempotency_key,
                "duplicate": stored.duplicate,
                "to": ",".join(event.destinations) if not stored.duplicate else "",
            }
        },
    )
