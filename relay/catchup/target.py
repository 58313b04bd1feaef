"""What a provider's run needs of relay, and the time formats providers speak."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Protocol

from relay.records import Tally, Window


class Target(Protocol):
    """The source being caught up, as a provider's run sees it."""

    source: str
    dry_run: bool  # look and count; store nothing, ask for nothing

    async def known(self, keys: list[str]) -> set[str]:
        """Which of these provider ids (the source's idempotency keys) relay has."""
        ...

    async def admit(self, body: bytes) -> bool:
        """Store an object fetched from the API as an event of the source (through the
        ingest path, deduplicated by its key): True if it was new."""
        ...


@dataclass(frozen=True, slots=True)
class Found:
    """A run's tally and, for people, anything worth saying (retention, still retrying)."""

    tally: Tally
    notes: tuple[str, ...] = ()


def rfc3339(moment: float, up: bool = False) -> str:
    """A Unix time as the RFC 3339 UTC string GitHub, Paddle and Svix take and give, to
    the second: down for a window's start, ``up`` for its end, so that the window given to
    the provider holds all of the one asked for."""
    whole = math.ceil(moment) if up else math.floor(moment)
    stamp = datetime.datetime.fromtimestamp(whole, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """``2026-12-07T10:00:00Z`` (or with an offset, or fractions) as Unix time."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def inside(window: Window, moment: float) -> bool:
    """Whether a provider's time (to the second) falls in the window, its ends widened to
    whole seconds as ``rfc3339`` widens them."""
    return math.floor(window.since) <= moment <= math.ceil(window.until)
