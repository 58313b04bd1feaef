"""The public listener: ``POST /in/<source>``, ``GET /healthz``, ``GET /readyz``.

A request is answered 2xx only after its event, with one delivery per routed destination,
is committed (see ``relay.store``). The answer never waits for delivery.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from relay import encoding
from relay.agents import AgentHub
from relay.config import Settings
from relay.errors import StorageUnavailable
from relay.extract import MAX_VALUE_LENGTH, Parsed, as_text, extract
from relay.ids import new_event_id
from relay.instants import parse_instant
from relay.metrics import Metrics
from relay.network import client_address, parse_address, within
from relay.normalize.items import Item, Items, items_of, key_type_time
from relay.normalize.mapping import MappingConfig, Reading
from relay.normalize.split import TooManyItems
from relay.ratelimit import Buckets, TokenBucket
from relay.records import Facts, NewEvent, Rejection, Stored
from relay.route import Route, destinations_for, ordering_keys
from relay.store import Store
from relay.verify import Inbound, Rejected, Verifier
from relay.verify.base import (
    Handshake,
    acknowledgement_of,
    challenge_of,
    handshake_of,
    redacted,
)
from relay.verify.schemes import SourceConfig

log = logging.getLogger("relay.ingress")

OUTCOMES = {
    200: "accepted",
    401: "rejected",
    403: "rejected",
    429: "limited",
    503: "unavailable",
    507: "unavailable",
    413: "too_large",
    408: "timeout",
    431: "too_large",
    400: "malformed",
    415: "malformed",
}


@dataclass(frozen=True, slots=True)
class Source:
    """A source as the handler needs it: built once at start."""

    config: SourceConfig
    verifier: Verifier
    routes: tuple[Route, ...]
    limit: TokenBucket | None
    client_limits: Buckets | None
    secret_headers: frozenset[str]
    mapping: MappingConfig | None = None

    @classmethod
    def build(cls, config: SourceConfig, settings: Settings, now: float) -> Source:
        limit = config.rate_limit
        per_client = config.client_rate_limit
        return cls(
            config,
            config.build_verifier(),
            settings.routes_for(config.name),
            TokenBucket(limit.rate, limit.burst, now) if limit else None,
            Buckets(per_client.rate, per_client.burst) if per_client else None,
            config.secret_headers(),
            settings.mapping(config.normalize) if config.normalize else None,
        )

    def wait(self, client: str | None, now: float) -> float:
        """Seconds the client must wait (0.0: go ahead). The per-client limit goes first,
        so one noisy address does not spend the whole source's allowance."""
        if self.client_limits is not None:
            wait = self.client_limits.take(client or "-", now)
            if wait:
                return wait
        return self.limit.take(now) if self.limit is not None else 0.0


def _json(status: int, payload: dict[str, object], **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers or None,
    )


def _answer(shake: Handshake, headers: dict[str, str] | None = None) -> web.Response:
    if shake.status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(
        status=shake.status, body=shake.body, content_type=shake.content_type, headers=headers
    )


def _unsupported_coding(coding: str) -> web.Response:
    known = ", ".join(encoding.KNOWN)
    return _json(
        415,
        {"error": f"Content-Encoding {as_text(coding)!r} is not supported; send one of {known}"},
        **{"Accept-Encoding": known},
    )


def _stored_headers(headers: Mapping[str, str], secret: frozenset[str]) -> str:
    """The request's headers as kept: a JSON array of [name, value], byte-exact (json.dumps
    escapes the surrogates of bytes that were not UTF-8), except headers that carry the
    source's secret itself, whose value is replaced by "[redacted]"."""
    if not secret:
        return json.dumps(list(headers.items()))
    return json.dumps(redacted(headers.items(), secret, only=True))


class NotAdmitted(Exception):
    """A fetched event the ingest path refused (storage full or down, a key too long …)."""


FETCHED_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))


def _error_of(response: web.Response) -> str:
    try:
        return str(json.loads(response.body)["error"])  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError):
        return "refused"


NOT_SPLIT = Items([])
MAX_HEADER_LINE = 8000  # bytes of one header (name and value) relay takes and forwards
MAX_KEY = MAX_VALUE_LENGTH  # bytes of an idempotency key (Stripe's are at most 255)
ITEM_HEADERS = json.dumps([["Content-Type", "application/json"]])


def _facts(reading: Reading | None, parent: str | None) -> Facts | None:
    if reading is None:
        return Facts(parent_id=parent) if parent is not None else None
    return Facts(
        parent_id=parent,
        provider=reading.provider,
        channel=reading.channel,
        provider_type=reading.provider_type,
        subject=reading.subject,
        contact=reading.contact,
        conversation=reading.conversation,
        rank=reading.rank,
    )


def _text_or_none(value: str | None) -> str | None:
    return as_text(value) if value is not None else None


def _identity(stored: Stored) -> dict[str, str]:
    """The headers of every answer for a stored event, whatever body its provider wants."""
    headers = {"X-Relay-Event-Id": stored.event_id}
    if stored.duplicate:
        headers["X-Relay-Duplicate"] = "true"
    return headers


def _accepted(stored: Stored, batch: bool = False) -> web.Response:
    flag = "true" if stored.duplicate else "false"
    items = ""
    if stored.items or batch:  # a batch says how many items it held, none included
        items = f', "items": {stored.items}, "new_items": {stored.new_items}'
    body = f'{{"id": "{stored.event_id}", "duplicate": {flag}{items}}}'.encode()
    return web.Response(body=body, content_type="application/json", headers=_identity(stored))


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
        self._read_timeout = settings.server.read_timeout
        self._max_headers = settings.server.max_header_size
        self._trusted = settings.server.trusted_proxies
        now = monotonic()
        self._sources = {s.name: Source.build(s, settings, now) for s in settings.sources}
        self._ordering = settings.ordering()
        self._bodies = {d.name: d.body for d in settings.destinations}
        self._stale_drop = {d.name for d in settings.destinations if d.stale == "drop"}
        self.unrouted = 0  # events stored that no route matched

    def update(self, settings: Settings) -> None:
        """A reloaded config: new sources, routes and ordering, swapped in at once (a request
        in flight finishes with the source it started with)."""
        now = self._monotonic()
        self._sources = {s.name: Source.build(s, settings, now) for s in settings.sources}
        self._ordering = settings.ordering()
        self._bodies = {d.name: d.body for d in settings.destinations}
        self._stale_drop = {d.name for d in settings.destinations if d.stale == "drop"}
        self._trusted = settings.server.trusted_proxies

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
            return _json(405, {"error": "use POST"}, Allow="POST")
        return _json(404, {"error": "not found"})

    async def challenge(self, request: web.Request) -> web.Response:
        """A GET on a source: a provider's subscription check (Meta's), never an event."""
        source = self._sources.get(request.match_info["source"])
        if source is None:
            return _json(404, {"error": "unknown source"})
        client = client_address(request.remote, request.headers, self._trusted)
        if source.config.allow_ips and not within(parse_address(client), source.config.allow_ips):
            return self._refuse(source, request, client, 403, "client address not allowed")
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
            return _json(405, {"error": "use POST"}, Allow="POST")
        if shake.status in (401, 403):
            reason = shake.body.decode("utf-8", "replace")
            return self._refuse(source, request, client, shake.status, reason)
        return _answer(shake)

    async def receive(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        response = await self._receive(request)
        name = request.match_info["source"]
        if name in self._sources:
            outcome = OUTCOMES.get(response.status, "other")
            if 200 <= response.status < 300:
                if response.headers.get("X-Relay-Duplicate"):
                    outcome = "duplicate"
                elif "X-Relay-Event-Id" in response.headers:
                    outcome = "accepted"
                else:
                    outcome = "handshake"  # answered, neither stored nor forwarded
            counter, latency = self._series(name, outcome)
            counter.inc()
            if outcome in ("accepted", "duplicate"):
                latency.observe(time.monotonic() - started)
            if self._observe is not None and outcome in ("accepted", "duplicate", "rejected"):
                self._observe(name, outcome == "rejected", time.time())
        return response

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

    async def _receive(self, request: web.Request) -> web.Response:
        if sum(len(k) + len(v) + 4 for k, v in request.raw_headers) > self._max_headers:
            return _json(431, {"error": "request headers too large"}, Connection="close")
        for name, value in request.raw_headers:
            if len(name) + len(value) > MAX_HEADER_LINE:
                # Forwarded as it came, it would be refused by the receiver (aiohttp's and
                # nginx's default line limit is 8 KiB) and the event die at once.
                header = name.decode("latin-1")[:100]
                error = f"header {header} is longer than {MAX_HEADER_LINE} bytes"
                return _json(431, {"error": error}, Connection="close")
        source = self._sources.get(request.match_info["source"])
        if source is None:
            return _json(404, {"error": "unknown source"})
        client = client_address(request.remote, request.headers, self._trusted)
        if source.config.allow_ips and not within(parse_address(client), source.config.allow_ips):
            return self._refuse(source, request, client, 403, "client address not allowed")
        wait = source.wait(client, self._monotonic())
        if wait:
            return _json(
                429, {"error": "rate limit exceeded"}, **{"Retry-After": str(math.ceil(wait))}
            )
        length = request.content_length
        if length is not None and length > self._max_body:
            return self._too_large()
        try:
            coding = encoding.coding_of(request.headers.get("Content-Encoding"))
        except encoding.Unsupported as exc:
            return _unsupported_coding(str(exc))
        try:
            if request.content.is_eof():  # all of it already arrived: no timer needed
                raw = await request.read()
            else:
                async with asyncio.timeout(self._read_timeout):
                    raw = await request.read()
            body = encoding.decode(raw, coding, self._max_body)
        except (web.HTTPRequestEntityTooLarge, encoding.TooLarge):
            return self._too_large()
        except TimeoutError:
            return _json(408, {"error": "body not received in time"}, Connection="close")
        except encoding.Undecodable as exc:
            # Signatures cover the decoded body, so there is nothing to verify yet: 400 first.
            return _json(400, {"error": f"body could not be decoded: {exc}"})
        except web.RequestPayloadError:
            # Broken chunked framing. The stream keeps the error; marking it ended stops
            # aiohttp from reading it again (and logging it) after the answer.
            request.content.feed_eof()
            return _json(400, {"error": "body framing is broken"}, Connection="close")
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
            return self._refuse(source, request, client, 401, exc.reason)
        shake = handshake_of(source.verifier, inbound)
        if shake is not None:
            return _answer(shake)
        admitted = await self._admit(source, headers, body, client, now)
        if isinstance(admitted, web.Response):
            return admitted
        stored, batch = admitted
        ack = acknowledgement_of(source.verifier, inbound)
        if ack is not None:
            return _answer(ack, _identity(stored))
        return _accepted(stored, batch)

    async def _admit(
        self,
        source: Source,
        headers: Mapping[str, str],
        body: bytes,
        client: str | None,
        now: float,
        origin: str | None = None,
    ) -> web.Response | tuple[Stored, bool]:
        """A verified request (or an object fetched from the provider's API) from its
        parsing on: routed, checked and committed. The stored event and whether it was a
        split batch, or the answer that refuses it."""
        parsed = Parsed(body)
        config = source.config
        content_type = _text_or_none(headers.get("Content-Type"))
        items = NOT_SPLIT
        if source.mapping is not None or config.split is not None:
            try:
                items = items_of(source.mapping, config.split, parsed, content_type, headers)
            except TooManyItems as exc:
                return _json(413, {"error": str(exc)})
        single = items.single
        event_type = extract(config.event_type, headers, parsed)
        if single is not None:
            event_type = single.type or single.provider_type
        destinations = destinations_for(source.routes, event_type, headers, parsed)
        if items.batch:  # the request itself goes only where the request is wanted
            destinations = tuple(d for d in destinations if self._bodies.get(d) == "original")
        if self._storage_full():
            return _json(
                507, {"error": "storage limit reached; try later"}, **{"Retry-After": "60"}
            )
        occurred_at = (
            parse_instant(extract(config.occurred_at, headers, parsed))
            if config.occurred_at is not None
            else None
        )
        key = extract(config.idempotency_key, headers, parsed, limit=None)
        if single is not None:
            key = single.key or key
            occurred_at = single.occurred_at or occurred_at
        if key is not None and len(key.encode("utf-8", "surrogatepass")) > MAX_KEY:
            error = f"the idempotency key ({config.idempotency_key}) is longer than {MAX_KEY} bytes"
            return _json(400, {"error": error})
        event = NewEvent(
            id=new_event_id(now),
            source=source.config.name,
            received_at=now,
            idempotency_key=None if items.batch else key,
            event_type=event_type,
            content_type=content_type,
            remote_addr=client,
            origin=origin,
            headers=_stored_headers(headers, source.secret_headers),
            body=body,
            destinations=destinations,
            ordering_keys=ordering_keys(self._ordering, config.name, destinations, headers, parsed),
            occurred_at=occurred_at,
            facts=_facts(single, None),
            drop_stale=self._drops(destinations) if single is not None else (),
        )
        event.items = [self._item_event(source, event, item, headers) for item in items.split]
        for index, item_event in enumerate(event.items):
            item_key = item_event.idempotency_key
            if item_key is not None and len(item_key.encode("utf-8", "surrogatepass")) > MAX_KEY:
                error = f"item {index}: its idempotency key is longer than {MAX_KEY} bytes"
                return _json(400, {"error": error})
        if not any(e.destinations for e in (event, *event.items)):
            self.unrouted += 1
            self._per_source(self._metrics.unrouted, config.name).inc()
        try:
            stored = await self._store.ingest(event)
        except StorageUnavailable:
            return _json(503, {"error": "cannot store events right now"}, **{"Retry-After": "5"})
        stale = sum(1 for e in (event, *event.items) if e.stale)
        if stale:
            self._per_source(self._metrics.stale, config.name).inc(stale)
        # A line per event only at debug: at info, the formatting and the write to stdout
        # (journald) cost about 100 µs per event (docs/benchmarks.md).
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "event.received",
                extra={
                    "fields": {
                        "event": stored.event_id,
                        "source": config.name,
                        "type": event.event_type,
                        "key": event.idempotency_key,
                        "duplicate": stored.duplicate,
                        "to": ",".join(destinations) if not stored.duplicate else "",
                    }
                },
            )
        return stored, items.batch

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
        if isinstance(admitted, web.Response):
            raise NotAdmitted(f"HTTP {admitted.status}: {_error_of(admitted)}")
        return admitted[0]

    def _drops(self, destinations: tuple[str, ...]) -> tuple[bool, ...]:
        if not self._stale_drop or not destinations:
            return ()  # no destination drops stale events: nothing to mark
        return tuple(d in self._stale_drop for d in destinations)

    def _item_event(
        self, source: Source, request: NewEvent, item: Item, headers: Mapping[str, str]
    ) -> NewEvent:
        """One item of a split batch as an event of its own, pointing at its request."""
        config = source.config
        rules = (config.idempotency_key, config.event_type, config.occurred_at)
        key, kind, occurred_at = key_type_time(item, rules, headers)
        wanted = destinations_for(source.routes, kind, headers, item.parsed)
        destinations = tuple(d for d in wanted if self._bodies.get(d) != "original")
        return NewEvent(
            id=new_event_id(request.received_at),
            source=config.name,
            received_at=request.received_at,
            idempotency_key=key,
            event_type=kind,
            content_type="application/json",
            remote_addr=request.remote_addr,
            headers=ITEM_HEADERS,
            body=item.body,
            destinations=destinations,
            ordering_keys=ordering_keys(
                self._ordering, config.name, destinations, headers, item.parsed
            ),
            occurred_at=occurred_at,
            facts=_facts(item.reading, request.id),
            drop_stale=self._drops(destinations),
        )

    def _refuse(
        self, source: Source, request: web.Request, client: str | None, status: int, reason: str
    ) -> web.Response:
        """401 or 403 with a short reason; logged, and kept in the rejections table."""
        name = source.config.name
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
        return _json(status, {"error": reason})

    async def expect(self, request: web.Request) -> web.Response | None:
        """``Expect: 100-continue``: refuse a declared oversized body before it is sent.

        Replaces aiohttp's default handler, which answers 500 when the header's value is not
        valid UTF-8 (it echoes the value into its error text).
        """
        if request.headers.get("Expect", "").lower() != "100-continue":
            return _json(417, {"error": "only Expect: 100-continue is supported"})
        length = request.content_length
        if length is not None and length > self._max_body:
            return self._too_large()
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    def _too_large(self) -> web.Response:
        return _json(413, {"error": f"body larger than {self._max_body} bytes"}, Connection="close")

    async def healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        problems = await self._problems()
        if problems:
            return _json(503, {"status": "not ready", "problems": problems})
        return _json(200, {"status": "ready"})
