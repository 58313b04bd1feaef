"""What the admin surface (the JSON API and the console) may touch of a running relay.

A narrow interface, so ``relay.admin`` never imports the app or reaches into the scheduler,
the lanes or the settings: the app hands it a ``Surface`` (``relay.control.Control``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from relay.configtypes import IPNetwork
from relay.records import EventPayload, ReplaySelection
from relay.sections import AlertsConfig, DestinationConfig
from relay.store import Reader

if TYPE_CHECKING:
    from relay.catchup import Report

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Who:
    """Who asked, for the audit trail: ``actor`` ('console', 'cli:alice@host', 'api', or
    'relay' itself) and ``origin`` (the client's address, 'unix' for the socket)."""

    actor: str
    origin: str | None


@dataclass(frozen=True, slots=True)
class DestinationView:
    name: str
    config: DestinationConfig
    paused: str | None  # why, when paused
    circuit: str | None  # closed, open, half-open; None without a breaker
    waiting: str | None = None  # why a due delivery is not being sent now


class Surface(Protocol):
    @property
    def trusted_proxies(self) -> tuple[IPNetwork, ...]:
        """Peers whose X-Forwarded-* headers are believed (the console's sign-in rules)."""
        ...

    def sources(self) -> list[str]:
        """The configured sources' names."""
        ...

    def destinations(self) -> list[DestinationView]:
        """Every destination with its live state, by name."""
        ...

    def agents(self) -> dict[str, dict[str, Any]]:
        """Per agent group: connected agents, credits, free, last_seen, offline_seconds."""
        ...

    def duplicates(self, source: str) -> int:
        """Duplicates answered for a source since relay started."""
        ...

    def alerts(self) -> AlertsConfig:
        """The ``[alerts]`` settings in force."""
        ...

    async def payload(self, event_id: str) -> EventPayload | None:
        """What a delivery of this event sends (its stored request), or None."""
        ...

    async def read(self, work: Callable[[Reader], T]) -> T:
        """People's reads, in a thread, on a read-only connection."""
        ...

    async def replay(
        self,
        sel: ReplaySelection,
        who: Who,
        request_id: str | None = None,
        dry_run: bool = False,
        request: str | None = None,
    ) -> dict[str, Any]:
        """Send again what ``sel`` selects, at most once per ``request_id``: the answer has
        matched, events, replayed, destinations, sample, repeated (the first answer again,
        for the same request; KeyReused for another ``request``, a digest of the request
        as sent). LookupError: no such event or delivery; ValueError: no such
        destination."""
        ...

    async def audit(
        self, who: Who, action: str, target: str | None, result: dict[str, Any]
    ) -> None:
        """Record an action the surface itself carried out (a sign-in, a backup)."""
        ...

    async def catch_up(
        self, source: str, since: float, until: float, dry_run: bool, who: Who
    ) -> Report:
        """Fetch back what the source's provider sent from ``since`` until ``until``
        (relay.catchup): the report, whose ``error`` says what the provider answered when it
        failed. LookupError: the source has no catch_up; ValueError: a window that makes no
        sense."""
        ...

    async def pause(self, name: str, reason: str, who: Who) -> bool:
        """False when there is no such destination."""
        ...

    async def resume(self, name: str, who: Who) -> bool: ...

    async def reload(self, who: Who) -> str | None:
        """Re-read the config file; why not, when it was refused."""
        ...

    async def prune(self, who: Who) -> dict[str, int]:
        """Run retention now; rows changed by kind."""
        ...

    async def metrics(self) -> tuple[bytes, str]:
        """The Prometheus exposition and its content type, gauges refreshed."""
        ...
