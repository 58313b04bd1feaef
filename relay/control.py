"""The running relay as operators act on it: the admin surface's implementation.

``Control`` gives the admin API and the console (``relay.admin.surface.Surface``) what they
may touch, and carries out their changes: replay, pause and resume, reload, prune, the
metrics at scrape time. The app builds it; nothing here starts or stops anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from relay.admin.surface import DestinationView
from relay.config import Settings
from relay.configtypes import IPNetwork
from relay.metrics import Metrics
from relay.retention import Pruner
from relay.scheduler import Scheduler
from relay.store import DeadFilter, Reader, Store

log = logging.getLogger("relay")
T = TypeVar("T")


class Control:
    def __init__(
        self,
        settings: Callable[[], Settings],
        store: Store,
        scheduler: Scheduler,
        metrics: Metrics,
        reload: Callable[[], Awaitable[str | None]],
        full: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._store = store
        self._scheduler = scheduler
        self._metrics = metrics
        self._reload = reload
        self._full = full

    @property
    def trusted_proxies(self) -> tuple[IPNetwork, ...]:
        return self._settings().server.trusted_proxies

    def sources(self) -> list[str]:
        return [s.name for s in self._settings().sources]

    def destinations(self) -> list[DestinationView]:
        return [
            DestinationView(
                name, lane.destination, lane.paused, lane.circuit.state if lane.circuit else None
            )
            for name, lane in sorted(self._scheduler.lanes.items())
        ]

    def duplicates(self, source: str) -> int:
        value = self._metrics.registry.get_sample_value(
            "relay_requests_total", {"source": source, "outcome": "duplicate"}
        )
        return int(value or 0)

    async def read(self, work: Callable[[Reader], T]) -> T:
        return await self._store.read(work)

    async def replay(self, f: DeadFilter, dry_run: bool = False) -> int:
        """One new pending delivery per dead one ``f`` selects (or only a count), and the
        lanes concerned woken."""
        if dry_run:
            return sum((await self._store.read(lambda r: r.dead_by_destination(f))).values())
        matched = await self._store.replay(f, time.time())
        if not matched:
            return 0
        self._scheduler.notify(matched)
        for name, n in matched.items():
            self._metrics.replays.labels(name).inc(n)
        count = sum(matched.values())
        log.info("delivery.replayed", extra={"fields": {"count": count}})
        return count

    async def pause(self, name: str, reason: str) -> bool:
        if name not in self._scheduler.lanes:
            return False
        await self._scheduler.pause(name, reason)
        return True

    async def resume(self, name: str) -> bool:
        if name not in self._scheduler.lanes:
            return False
        await self._scheduler.resume(name)
        return True

    async def reload(self) -> str | None:
        return await self._reload()

    async def prune(self) -> dict[str, int]:
        return await Pruner(self._settings().retention, self._store).prune_once()

    async def metrics(self) -> tuple[bytes, str]:
        lanes = [(v.name, v.circuit or "closed", v.paused is not None) for v in self.destinations()]
        gauges = await self._store.gauges()
        self._metrics.refresh(gauges, lanes, self._store.size(), self._full(), time.time())
        return self._metrics.exposition()
