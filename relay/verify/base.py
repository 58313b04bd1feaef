"""The verifier interface every scheme plugs into.

A verifier is built once from its source's config and then called for every request with
the raw bytes and headers. It returns nothing when the request is authentic and raises
``Rejected`` with a short, non-secret reason otherwise. Verifiers do no I/O.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class Inbound:
    """What a verifier may look at: one received request, exactly as it arrived."""

    __slots__ = ("_url", "body", "headers", "method", "remote")

    def __init__(
        self,
        method: str,
        url: str | Callable[[], str],
        headers: Mapping[str, str],
        body: bytes,
        remote: str | None,
    ) -> None:
        self.method = method
        self._url = url
        self.headers = headers  # case-insensitive
        self.body = body
        self.remote = remote

    @property
    def url(self) -> str:
        """The URL as the sender saw it (some schemes sign it); built only when asked."""
        if callable(self._url):
            self._url = self._url()
        return self._url


class Rejected(Exception):
    """The request is not authentic. ``reason`` is safe to send back and to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Verifier(Protocol):
    def verify(self, request: Inbound, now: float) -> None:
        """Return if the request is authentic; raise Rejected otherwise."""


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


def secrets_of(one: object | None, many: Sequence[object]) -> tuple[bytes, ...]:
    """Secret values as bytes from a ``secret`` and a ``secrets`` list (rotation: any may match)."""
    values = [one, *many] if one is not None else list(many)
    return tuple(getattr(s, "value", "").encode() for s in values)


def equal(expected: bytes, provided: bytes) -> bool:
    """Constant-time comparison, so timing reveals nothing about the expected value."""
    return hmac.compare_digest(expected, provided)


def header_bytes(value: str) -> bytes:
    """A header value as bytes for comparison; never raises on odd characters."""
    return value.encode("utf-8", "replace")
