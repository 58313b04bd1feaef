"""The guards a request passes before its event is built, each saying why it stops one:
``admit`` (its headers' size, the source, the client's address, the rate limits, the
declared length) and ``read_body`` (within ``read_timeout``, decoded, within
``max_body_size``). GET challenges pass ``admit`` too."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from relay import encoding
from relay.config import Settings
from relay.configtypes import IPNetwork
from relay.ingress.answers import Answer, Refusal, error, too_large, unsupported_coding
from relay.network import client_address, parse_address, within
from relay.normalize.mapping import MappingConfig
from relay.ratelimit import Buckets, TokenBucket
from relay.route import Route
from relay.verify import Verifier
from relay.verify.schemes import SourceConfig

MAX_HEADER_LINE = 8000  # bytes of one header (name and value) relay takes and forwards


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


@dataclass(frozen=True, slots=True)
class Admitted:
    source: Source
    client: str | None  # the client's address (through trusted proxies)


@dataclass(frozen=True, slots=True)
class Limits:
    """What admit and read_body check against (the [server] section's)."""

    max_headers: int
    max_body: int
    read_timeout: float
    trusted: tuple[IPNetwork, ...]


def admit(
    request: web.Request,
    sources: Mapping[str, Source],
    limits: Limits,
    now: Callable[[], float],
) -> Admitted | Answer | Refusal:
    """Whether this request may be read at all (``now``: the rate limits' clock)."""
    if sum(len(k) + len(v) + 4 for k, v in request.raw_headers) > limits.max_headers:
        return error(431, "too_large", "request headers too large", Connection="close")
    for name, value in request.raw_headers:
        if len(name) + len(value) > MAX_HEADER_LINE:
            # Forwarded as it came, it would be refused by the receiver (aiohttp's and
            # nginx's default line limit is 8 KiB) and the event die at once.
            header = name.decode("latin-1")[:100]
            text = f"header {header} is longer than {MAX_HEADER_LINE} bytes"
            return error(431, "too_large", text, Connection="close")
    source = sources.get(request.match_info["source"])
    if source is None:
        return error(404, "unknown", "unknown source")
    client = client_address(request.remote, request.headers, limits.trusted)
    if source.config.allow_ips and not within(parse_address(client), source.config.allow_ips):
        return Refusal(403, "client address not allowed", client)
    wait = source.wait(client, now())
    if wait:
        retry = {"Retry-After": str(math.ceil(wait))}
        return error(429, "limited", "rate limit exceeded", **retry)
    length = request.content_length
    if length is not None and length > limits.max_body:
        return too_large(limits.max_body)
    return Admitted(source, client)


async def read_body(request: web.Request, limits: Limits) -> bytes | Answer:
    """The body as its signature covers it: read within ``read_timeout``, decoded."""
    try:
        coding = encoding.coding_of(request.headers.get("Content-Encoding"))
    except encoding.Unsupported as exc:
        return unsupported_coding(str(exc))
    try:
        if request.content.is_eof():  # all of it already arrived: no timer needed
            raw = await request.read()
        else:
            async with asyncio.timeout(limits.read_timeout):
                raw = await request.read()
        return encoding.decode(raw, coding, limits.max_body)
    except (web.HTTPRequestEntityTooLarge, encoding.TooLarge):
        return too_large(limits.max_body)
    except TimeoutError:
        return error(408, "timeout", "body not received in time", Connection="close")
    except encoding.Undecodable as exc:
        # Signatures cover the decoded body, so there is nothing to verify yet: 400 first.
        return error(400, "malformed", f"body could not be decoded: {exc}")
    except web.RequestPayloadError:
        # Broken chunked framing. The stream keeps the error; marking it ended stops
        # aiohttp from reading it again (and logging it) after the answer.
        request.content.feed_eof()
        return error(400, "malformed", "body framing is broken", Connection="close")
