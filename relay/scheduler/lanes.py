"""The scheduler: one lane per destination (``lane.py``), woken after each commit.

The app wires it to the store: ``Store.add_listener(scheduler.notify)`` wakes the lanes that
got new deliveries, and ``Store.hand_off = scheduler`` lets idle lanes take new deliveries
already leased, at commit. Alerts go out through ``relay.alerting.Alerting``, which the app
gives the ingest path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from relay.agents import AgentHub
from relay.alerting import Alerting
from relay.clock import Clock
from relay.metrics import Metrics
from relay.records import Claim, EventPayload
from relay.scheduler.lane import LEASE_MARGIN, Lane
from relay.sections import DestinationConfig
from relay.store import Store

log = logging.getLogger("relay.scheduler")


class Scheduler:
    """All lanes, woken by the store after each commit."""

    def __init__(
        self,
        destinations: Iterable[DestinationConfig],
        store: Store,
        metrics: Metrics | None = None,
        alerts: Alerting | None = None,
        clock: Clock | None = None,
        hub: AgentHub | None = None,
        lease_margin: float = LEASE_MARGIN,
    ) -> None:
        self._store = store
        self._lease_margin = lease_margin
        self._syncing: asyncio.Task[None] | None = None
        self._clock = clock
        self._hub = hub
        self.metrics = metrics or Metrics()
        self._alerts = alerts
        self._lanes = {d.name: self._lane(d) for d in destinations}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._offered: dict[str, tuple[Lane, int]] = {}  # the writer has one batch at a time

    def _lane(self, destination: DestinationConfig) -> Lane:
        return Lane(
            destination,
            self._store,
            self.metrics,
            self._alerts,
            self._clock,
            self._hub,
            self._lease_margin,
        )

    async def load(self) -> None:
        """Apply pauses kept in the database, then each destination's ``paused`` switch."""
        stored = await self._store.paused_destinations()
        for name, lane in self._lanes.items():
            switch = lane.destination.paused
            if switch is True:
                lane.paused = "paused in the config"
            elif switch is None and name in stored:
                lane.paused = stored[name] or "paused"
            elif switch is False and name in stored:
                await self._store.set_paused(name, False, None)
            if lane.paused:
                log.warning(
                    "destination.paused",
                    extra={"fields": {"destination": name, "reason": lane.paused}},
                )

    async def pause(self, name: str, reason: str = "paused by an operator") -> None:
        await self._lanes[name].pause(reason)

    async def resume(self, name: str) -> None:
        await self._lanes[name].resume()

    def lane(self, name: str) -> Lane:
        return self._lanes[name]

    def offer(self, wanted: Mapping[str, int]) -> dict[str, tuple[int, float]]:
        """The store's HandOff: idle lanes reserve slots for a batch's deliveries."""
        self._offered = {}
        for name, count in wanted.items():
            lane = self._lanes.get(name)
            reserved = lane.offer(count) if lane is not None else 0
            if lane is not None and reserved:
                self._offered[name] = (lane, reserved)
        return {name: (n, lane.lease) for name, (lane, n) in self._offered.items()}

    def take(self, leased: Mapping[str, list[Claim]], payloads: Mapping[str, EventPayload]) -> None:
        offered, self._offered = self._offered, {}
        for name, (lane, reserved) in offered.items():
            claims = leased.get(name, [])
            if lane.stopping and claims:  # replaced by a reload meanwhile
                # Its lease expires and the new lane claims it: late, never lost.
                lane.take(reserved, [], payloads)
                new = self._lanes.get(name)
                if new is not None:
                    new.notify()
                continue
            lane.take(reserved, claims, payloads)

    def wake_group(self, group: str) -> None:
        """An agent of ``group`` connected, or one of its credits came free."""
        for lane in self._lanes.values():
            if lane.destination.agent == group:
                lane.notify()

    def notify(self, destinations: Iterable[str]) -> None:
        """New work for these destinations (``*``: for any of them)."""
        if "*" in destinations:
            destinations = list(self._lanes)
        for name in destinations:
            lane = self._lanes.get(name)
            if lane is not None:
                lane.notify()

    def sync_soon(self) -> None:
        """Another relay on the database may have paused, resumed or tripped a
        destination: read the shared state (once, however many changes came)."""
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.create_task(self._sync(), name="scheduler-sync")

    async def _sync(self) -> None:
        try:
            paused = await self._store.paused_destinations()
            circuits = await self._store.circuits()
        except Exception as exc:  # the database is away: the next poll tries again
            log.warning("scheduler.sync_failed", extra={"fields": {"error": str(exc)}})
            return
        for name, lane in self._lanes.items():
            lane.adopt(paused.get(name) or "paused" if name in paused else None, circuits.get(name))

    def start(self) -> None:
        self._tasks = {
            name: asyncio.create_task(lane.run(), name=f"lane-{name}")
            for name, lane in self._lanes.items()
        }

    @property
    def lanes(self) -> dict[str, Lane]:
        return dict(self._lanes)

    async def update(self, destinations: Iterable[DestinationConfig], grace: float) -> None:
        """A reloaded config: new lanes for new or changed destinations, old ones stopped
        (their attempts in flight finish within ``grace``; their leases cover the rest)."""
        wanted = {d.name: d for d in destinations}
        retired: list[Lane] = []
        for name, lane in list(self._lanes.items()):
            if wanted.get(name) != lane.destination:
                lane.request_stop()
                retired.append(lane)
                del self._lanes[name]
        for name, config in wanted.items():
            if name in self._lanes:
                continue
            lane = self._lane(config)
            old = next((r for r in retired if r.name == name), None)
            if config.paused is True:
                lane.paused = "paused in the config"
            elif config.paused is None and old is not None:
                lane.paused = old.paused
            elif config.paused is False and old is not None and old.paused:
                await self._store.set_paused(name, False, None)
            self._lanes[name] = lane
            self._tasks[name] = asyncio.create_task(lane.run(), name=f"lane-{name}")
        for lane in retired:
            self._retiring.add(asyncio.create_task(lane.drain(grace)))
        self._retiring = {t for t in self._retiring if not t.done()}

    @property
    def healthy(self) -> bool:
        running = all(not t.done() for n, t in self._tasks.items() if n in self._lanes)
        return running and all(lane.healthy for lane in self._lanes.values())

    def problems(self) -> list[str]:
        return [f"{n}: {lane.last_error}" for n, lane in self._lanes.items() if not lane.healthy]

    async def stop(self, grace: float) -> None:
        """Stop claiming everywhere, then let each lane's attempts finish within ``grace``."""
        for lane in self._lanes.values():
            lane.request_stop()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await asyncio.gather(*(lane.drain(grace) for lane in self._lanes.values()))
        await asyncio.gather(*self._retiring, return_exceptions=True)
