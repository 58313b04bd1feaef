"""One attempt: POST a stored event to a destination and report what happened.

The body and content type go out byte for byte; the original headers pass through (unless
``forward_headers = false``) except hop-by-hop ones, Host and framing (aiohttp sets those
for the new connection). Then the destination's header transforms apply (remove, set, add),
relay adds its own ``X-Relay-*`` headers so the receiver can tell a repeat (same event id,
higher attempt), and, with a ``signing_secret``, Standard Webhooks headers
(``webhook-id`` = the event id, stable across attempts) replace any the sender sent.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiohttp

from relay.normalize.envelope import envelope_body, item_body
from relay.records import Claim, EventPayload
from relay.sections import DestinationConfig
from relay.verify.base import REDACTED, redacted

EXCERPT_BYTES = 512  # of a response's body, unless the destination's keep_response says
HEADERS_BYTES = 4096  # of a response's headers

# RFC 9110 §7.6.1 hop-by-hop headers, plus those that describe the old connection or framing.
DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",  # aiohttp's server already decoded the body we stored
        "expect",
    }
)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    started_at: float
    duration_ms: float
    status: int | None
    error: str | None
    excerpt: str | None
    retry_after: str | None
    permanent: bool = False  # refused before it was sent (an agent's allow list): dead now
    headers: str | None = None  # the response's headers: JSON [[name, value], …], redacted


SIGNATURE_HEADERS = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature"})


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a destination does to every request it sends, prepared once."""

    forward: bool
    remove: frozenset[str]
    set: tuple[tuple[str, str], ...]
    add: tuple[tuple[str, str], ...]
    signing_key: bytes | None
    body: str = "original"  # or "item", "canonical" (relay.normalize.envelope)

    @classmethod
    def of(cls, destination: DestinationConfig) -> Outgoing:
        transform = destination.headers
        secret = destination.signing_secret
        key = base64.b64decode(secret.value.removeprefix("whsec_")) if secret else None
        return cls(
            destination.forward_headers,
            frozenset(name.lower() for name in transform.remove),
            tuple((k, v.value) for k, v in transform.set.items()),
            tuple((k, v.value) for k, v in transform.add.items()),
            key,
            destination.body,
        )


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """A Standard Webhooks ``webhook-signature`` value (``v1,<base64>``)."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode()


def request_of(
    event: EventPayload, claim: Claim, outgoing: Outgoing | None = None, now: float | None = None
) -> tuple[list[tuple[str, str]], bytes]:
    """The headers and body of one attempt, in the destination's ``body`` shape. An item or
    an envelope is relay's own JSON: the sender's headers (its signature covered other
    bytes) are not passed on; relay's signature, if any, covers what is sent."""
    mode = outgoing.body if outgoing is not None else "original"
    if mode == "original":
        return outgoing_headers(event, claim, outgoing, now), event.body
    body = item_body(event) if mode == "item" else envelope_body(event)
    return outgoing_headers(event, claim, outgoing, now, body), body


def outgoing_headers(
    event: EventPayload,
    claim: Claim,
    outgoing: Outgoing | None = None,
    now: float | None = None,
    own: bytes | None = None,
) -> list[tuple[str, str]]:
    """The headers of an attempt; ``own``: relay's own body (an item or an envelope),
    sent as JSON without the sender's headers."""
    pairs: list[tuple[str, str]] = (
        json.loads(event.headers) if own is None else [("Content-Type", "application/json")]
    )
    connection_named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    headers = [
        (name, _clean(value))
        for name, value in pairs
        if (low := name.lower()) not in DROPPED
        and low not in connection_named
        and not low.startswith("x-relay-")  # a sender must not forge relay's own headers
        and value != REDACTED  # the source's own secret, never stored (ingress), never sent
    ]
    if outgoing is not None:
        headers = _transform(headers, outgoing)
    headers += [
        ("X-Relay-Event-Id", event.id),
        ("X-Relay-Delivery-Id", str(claim.id)),
        ("X-Relay-Attempt", str(claim.attempt)),
        ("X-Relay-Source", event.source),
    ]
    if event.stale:
        headers.append(("X-Relay-Stale", "true"))
    if event.origin is not None:
        # Fetched from the provider's API (catch-up): it carries no provider signature, so
        # the receiver must trust relay's own (docs/providers.md, "After an outage").
        headers.append(("X-Relay-Origin", event.origin))
    if outgoing is not None and outgoing.signing_key is not None:
        stamp = int(now if now is not None else time.time())
        body = event.body if own is None else own
        headers += [
            ("webhook-id", event.id),
            ("webhook-timestamp", str(stamp)),
            ("webhook-signature", sign(outgoing.signing_key, event.id, stamp, body)),
        ]
    return headers


def _transform(headers: list[tuple[str, str]], outgoing: Outgoing) -> list[tuple[str, str]]:
    drop = set(outgoing.remove) | {name.lower() for name, _ in outgoing.set}
    if outgoing.signing_key is not None:
        drop |= SIGNATURE_HEADERS  # the sender's own, which relay's signature replaces
    kept = [
        (name, value)
        for name, value in headers
        if (low := name.lower()) not in drop and (outgoing.forward or low == "content-type")
    ]
    return kept + list(outgoing.set) + list(outgoing.add)


def _clean(value: str) -> str:
    """A header value aiohttp can send: bytes that were not UTF-8 become U+FFFD.

    aiohttp's server decodes header bytes with surrogateescape, and its C header writer
    silently cuts a value at the first surrogate: ``caf\udce9 x`` would go out as ``caf``.
    """
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def tls_context(destination: DestinationConfig) -> ssl.SSLContext | bool:
    """The TLS settings of a destination: its CA bundle, client certificate (mTLS), or no
    verification at all (``tls.verify = false``, which relay logs as a warning at start)."""
    tls = destination.tls
    if not tls.verify:
        return False
    if tls.ca_file is None and tls.cert_file is None:
        return True  # the system's CAs
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def new_session(destination: DestinationConfig) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=destination.max_concurrency, ttl_dns_cache=60, ssl=tls_context(destination)
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def attempt(
    session: aiohttp.ClientSession,
    destination: DestinationConfig,
    event: EventPayload,
    claim: Claim,
    outgoing: Outgoing | None = None,
) -> AttemptResult:
    """One direct attempt: the stored request, as the destination transforms it."""
    headers, body = request_of(event, claim, outgoing, time.time())
    return await send(
        session,
        destination.url,
        headers,
        body,
        destination.timeout,
        destination.proxy,
        destination.keep_response,
    )


async def send(
    session: aiohttp.ClientSession,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float,  # noqa: ASYNC109 - it is the receiver's time limit, not this call's
    proxy: str | None = None,
    keep: int = EXCERPT_BYTES,
) -> AttemptResult:
    """POST it and report what happened. The agent calls this too, so a delivery through
    an agent ends exactly as a direct one would."""
    started_at = time.time()
    clock = time.monotonic()
    status: int | None = None
    error: str | None = None
    excerpt: str | None = None
    retry_after: str | None = None
    kept_headers: str | None = None
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            proxy=proxy,
            skip_auto_headers=("Content-Type",),  # the original's, or none, never a default
            allow_redirects=False,  # a redirect could point anywhere: treat it as permanent
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            retry_after = response.headers.get("Retry-After")
            kept_headers = response_headers(response.raw_headers)
            raw = await response.content.read(keep) if keep else b""
            excerpt = raw.decode("utf-8", "replace") or None
    except TimeoutError:
        error = f"timed out after {timeout:g}s"
    except aiohttp.ClientError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    if status is not None and not 200 <= status < 300 and error is None:
        error = f"HTTP {status}"
    duration_ms = (time.monotonic() - clock) * 1000
    return AttemptResult(
        started_at, duration_ms, status, error, excerpt, retry_after, headers=kept_headers
    )


def response_headers(raw: Sequence[tuple[bytes, bytes]]) -> str:
    """A response's headers as stored with its attempt: JSON pairs, secrets (a cookie, a
    token) redacted, at most ``HEADERS_BYTES`` of them."""
    return kept_headers(
        (name.decode("latin-1"), value.decode("utf-8", "replace")) for name, value in raw
    )


def kept_headers(pairs: Iterable[tuple[str, str]]) -> str:
    """Header pairs as stored with an attempt (see ``response_headers``); also what relay
    keeps of the headers an agent reports, whatever the agent did to them."""
    kept: list[list[str]] = []
    size = 0
    for name, value in redacted(pairs):
        size += len(name) + len(value)
        if size > HEADERS_BYTES:
            kept.append(["…", "more headers not kept"])
            break
        kept.append([name, value])
    return json.dumps(kept)


async def close_quietly(session: aiohttp.ClientSession) -> None:
    await session.close()
    await asyncio.sleep(0)  # let the connector's transports close before the loop ends
