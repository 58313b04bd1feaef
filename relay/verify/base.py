"""The verifier interface every scheme plugs into.

A verifier is built once from its source's config and then called for every request with
the raw bytes and headers. It returns nothing when the request is authentic and raises
``Rejected`` with a short, non-secret reason otherwise. Verifiers do no I/O.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Inbound:
    """What a verifier may look at: one received request, exactly as it arrived."""

    __slots__ = ("_url", "body", "headers", "method", "query_string", "remote")

    def __init__(
        self,
        method: str,
        url: str | Callable[[], str],
        headers: Mapping[str, str],
        body: bytes,
        remote: str | None,
        query_string: str = "",
    ) -> None:
        self.method = method
        self._url = url
        self.headers = headers  # case-insensitive
        self.body = body
        self.remote = remote
        self.query_string = query_string  # raw, still percent-encoded, without the '?'

    @property
    def url(self) -> str:
        """The URL as relay saw it, query included; built only when asked."""
        if callable(self._url):
            self._url = self._url()
        return self._url

    def public_url(self, configured: str | None) -> str:
        """The URL as the sender called it: ``configured`` (the address the provider was
        given, since a proxy in front changes scheme, host and port) plus this request's
        query string exactly as sent; relay's own view of the URL when none is configured."""
        if configured is None:
            return self.url
        return f"{configured}?{self.query_string}" if self.query_string else configured


class Rejected(Exception):
    """The request is not authentic. ``reason`` is safe to send back and to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Verifier(Protocol):
    def verify(self, request: Inbound, now: float) -> None:
        """Return if the request is authentic; raise Rejected otherwise."""


# A verifier may also have, optionally:
#   handshake(request) -> Handshake | None   for a verified POST that is the provider's
#                                             endpoint check, answered and not stored;
#   challenge(request) -> Handshake           for a GET to the source (Meta's subscribe);
#   acknowledgement(request) -> Handshake | None  the body of the 2xx for a stored event,
#                                             when the provider expects more than any 2xx.


@dataclass(frozen=True, slots=True)
class Handshake:
    """An answer relay gives itself, neither stored nor forwarded (e.g. Slack's challenge)."""

    status: int
    body: bytes
    content_type: str = "text/plain"


def handshake_of(verifier: Verifier, request: Inbound) -> Handshake | None:
    """The handshake answer for an authentic request, if its scheme has one and this is it."""
    answer = getattr(verifier, "handshake", None)
    result: Handshake | None = answer(request) if answer is not None else None
    return result


def challenge_of(verifier: Verifier, request: Inbound) -> Handshake | None:
    """The answer to a GET on the source; None when the scheme has no GET handshake."""
    answer = getattr(verifier, "challenge", None)
    result: Handshake | None = answer(request) if answer is not None else None
    return result


def acknowledgement_of(verifier: Verifier, request: Inbound) -> Handshake | None:
    answer = getattr(verifier, "acknowledgement", None)
    result: Handshake | None = answer(request) if answer is not None else None
    return result


def secrets_of(one: object | None, many: Sequence[object]) -> tuple[bytes, ...]:
    """Secret values as bytes from a ``secret`` and a ``secrets`` list (rotation: any may match)."""
    values = [one, *many] if one is not None else list(many)
    return tuple(getattr(s, "value", "").encode() for s in values)


def equal(expected: bytes, provided: bytes) -> bool:
    """Constant-time comparison, so timing reveals nothing about the expected value."""
    return hmac.compare_digest(expected, provided)


def any_equal(expected: Sequence[bytes], given: Sequence[bytes]) -> bool:
    """Whether any given value matches any expected one; every pair is compared (no early
    exit), so timing does not tell which secret or which signature matched."""
    results = [equal(e, g) for e in expected for g in given]
    return any(results)


def mac(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.digest(key, message, algorithm)


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None for anything else (never raises)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# Header names whose values are secrets or signatures, matched as parts of the lower-cased
# name: never shown or stored outside the event itself (rejections, console, CLI).
SECRET_HEADER_PARTS = ("signature", "token", "authorization", "secret", "hmac", "cookie", "key")
REDACTED = "[redacted]"


def redacted(
    pairs: Iterable[tuple[str, str]], also: frozenset[str] = frozenset(), only: bool = False
) -> list[list[str]]:
    """[name, value] pairs with the value of every secret-bearing header replaced; ``also``
    adds lower-cased names a source configured (its token header, say). With ``only``, just
    those names are replaced (what is stored: signatures stay, a receiver may check them)."""
    out = []
    for name, value in pairs:
        lower = name.lower()
        secret = lower in also or (not only and any(part in lower for part in SECRET_HEADER_PARTS))
        out.append([name, REDACTED if secret else value])
    return out


def header_bytes(value: str) -> bytes:
    """A header value as bytes for comparison; never raises on odd characters."""
    return value.encode("utf-8", "replace")
