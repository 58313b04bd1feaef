"""What the admin surface (the JSON API and the console) may touch of a running relay.

A narrow interface, so ``relay.admin`` never imports the app or reaches into the scheduler,
the lanes or the settings: the app hands it a ``Surface`` (``relay.control.Control``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from relay.config import DestinationConfig
from relay.configtypes import IPNetwork
from relay.store import DeadFilter, Reader

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DestinationView:
    name: str
    config: DestinationConfig
    paused: str | None  # why, when paused
    circuit: str | None  # closed, open, half-open; None without a breaker


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

    def duplicates(self, source: str) -> int:
        """Duplicates answered for a source since relay started."""
        ...

    async def read(self, work: Callable[[Reader], T]) -> T:
        """People's reads, in a thread, on a read-only connection."""
        ...

    async def replay(self, f: DeadFilter, dry_run: bool = False) -> int:
        """Replay the dead deliveries ``f`` selects (or only count them); how many."""
        ...

    async def pause(self, name: str, reason: str) -> bool:
        """False when there is no such destination."""
        ...

    async def resume(self, name: str) -> bool: ...

    async def reload(self) -> str | None:
        """Re-read the config file; why not, when it was refused."""
        ...

    async def prune(self) -> dict[str, int]:
        """Run retention now; rows changed by kind."""
        ...

    async def metrics(self) -> tuple[bytes, str]:
        """The Prometheus exposition and its content type, gauges refreshed."""
        ...
