"""The running relay as operators act on it: the admin surface's implementation.

``Control`` gives the admin API and the console (``relay.admin.surface.Surface``) what they
may touch, and carries out their changes: replay, pause and resume, reload, prune, the
metrics at scrape time. The app builds it; nothing here starts or stops anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from multidict import CIMultiDict

from relay.admin.surface import DestinationView, Who
from relay.agents import AgentHub
from relay.config import Settings
from relay.configtypes import IPNetwork
from relay.errors import StorageUnavailable
from relay.extract import Parsed
from relay.metrics import Metrics
from relay.records import Action, EventPayload, ReplaySelection, ReplayTarget
from relay.retention import Pruner
from relay.route import destinations_for, ordering_keys
from relay.scheduler.lanes import Scheduler
from relay.sections import AlertsConfig
from relay.store import Reader, Store

if TYPE_CHECKING:
    from relay.catchup import CatchUp, Report

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
        config_path: Callable[[], str | Path | None] = lambda: None,
        hub: AgentHub | None = None,
        catch_up: CatchUp | None = None,
    ) -> None:
        self._catch_up = catch_up
        self._config_path = config_path
        self._hub = hub
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
                name,
                lane.destination,
                lane.paused,
                lane.circuit.state if lane.circuit else None,
                lane.waiting(),
            )
            for name, lane in sorted(self._scheduler.lanes.items())
        ]

    def agents(self) -> dict[str, dict[str, Any]]:
        return self._hub.status() if self._hub is not None else {}

    def duplicates(self, source: str) -> int:
        value = self._metrics.registry.get_sample_value(
            "relay_requests_total", {"source": source, "outcome": "duplicate"}
        )
        return int(value or 0)

    def alerts(self) -> AlertsConfig:
        return self._settings().alerts

    async def payload(self, event_id: str) -> EventPayload | None:
        return (await self._store.load_events([event_id])).get(event_id)

    async def read(self, work: Callable[[Reader], T]) -> T:
        return await self._store.read(work)

    async def replay(
        self,
        sel: ReplaySelection,
        who: Who,
        request_id: str | None = None,
        dry_run: bool = False,
        request: str | None = None,
    ) -> dict[str, Any]:
        """New deliveries for what ``sel`` selects (see ReplaySelection), at most once per
        ``request_id``, recorded in the audit trail; or with ``dry_run`` only how many and
        a sample. ``request`` names the request as it was sent (a digest), so that the same
        id with another request is KeyReused. A repeat answers the first answer again.
        LookupError for an event or delivery that does not exist, ValueError for a
        destination the config does not have."""
        settings = self._settings()
        if sel.destination is not None and sel.destination not in {
            d.name for d in settings.destinations
        }:
            raise ValueError(f"no destination {sel.destination!r} in the config")
        found = await self._store.read(lambda r: r.replay_targets(sel))
        if not found and (sel.event is not None or sel.delivery is not None):
            what = f"event {sel.event}" if sel.event is not None else f"delivery {sel.delivery}"
            exists = await self._store.read(
                lambda r: r.event(sel.event) is not None if sel.event is not None else False
            )
            if not exists:
                raise LookupError(f"no {what}")
        targets, skipped = await self._place(found, sel, settings)
        answer: dict[str, Any] = {
            "matched": len(targets),
            "events": len({t.event_id for t in targets}),
            "skipped": skipped,
            "sample": [{"event_id": t.event_id, "destination": t.destination} for t in targets[:5]],
            "dry_run": dry_run,
        }
        if dry_run:
            return answer | {"replayed": 0, "repeated": False}
        params = _params(sel) | ({"request": request} if request is not None else {})
        action = Action(who.actor, who.origin, "replay", _describe(sel), params, request_id)
        result, repeated = await self._store.replay(
            targets, action, sel.again, time.time(), summary=answer
        )
        if repeated:  # the first answer, as it was (audit rows before 0.2 kept only counts)
            first = {"matched": result.get("replayed"), "skipped": 0, "sample": []}
            return {**first, **result, "dry_run": False, "repeated": True}
        counts = result.get("destinations", {})
        if isinstance(counts, dict) and counts:
            self._scheduler.notify(counts)
            for name, n in counts.items():
                self._metrics.replays.labels(name).inc(n)
            fields = {"count": result.get("replayed"), "actor": who.actor}
            log.info("delivery.replayed", extra={"fields": fields})
        return result | {"repeated": False}

    async def _place(
        self, found: list[ReplayTarget], sel: ReplaySelection, settings: Settings
    ) -> tuple[list[ReplayTarget], int]:
        """Where each target goes: its own destination; the named one (a back-fill: once
        per event); or, for an event that went nowhere, where the routes send it now. The
        ordering key of a new delivery comes from the destination's config. Targets whose
        destination is no longer configured are skipped (counted)."""
        named = sel.destination
        per_event = named is not None and (
            sel.state in ("unrouted", "any") or sel.event is not None or sel.delivery is not None
        )
        placed: list[ReplayTarget] = []
        if per_event:
            assert named is not None
            seen: dict[str, ReplayTarget] = {}
            for t in found:
                earlier = seen.get(t.event_id)
                if earlier is None or t.destination == named:
                    repeats = t.replay_of if t.destination == named else None
                    key = t.ordering_key if t.destination == named else None
                    seen[t.event_id] = ReplayTarget(t.event_id, t.source, named, repeats, key)
            placed = list(seen.values())
        else:
            placed = [t for t in found if t.destination is not None]
        unrouted = [t for t in found if t.destination is None] if not per_event else []
        fresh = [t for t in placed if t.replay_of is None and t.ordering_key is None]
        needs = [t.event_id for t in [*unrouted, *fresh]]
        inputs = await self._store.read(lambda r: r.routing(needs)) if needs else {}
        ordering = settings.ordering()
        out: list[ReplayTarget] = []
        for t in placed:
            if t.replay_of is None and t.ordering_key is None and t.event_id in inputs:
                headers, parsed = _inputs(inputs[t.event_id])
                keys = ordering_keys(ordering, t.source, (t.destination or "",), headers, parsed)
                t = ReplayTarget(
                    t.event_id, t.source, t.destination, None, keys[0] if keys else None
                )
            out.append(t)
        for t in unrouted:
            if t.event_id not in inputs:
                continue
            event_type = inputs[t.event_id][0]
            headers, parsed = _inputs(inputs[t.event_id])
            names = destinations_for(settings.routes_for(t.source), event_type, headers, parsed)
            keys = ordering_keys(ordering, t.source, names, headers, parsed) or (None,) * len(names)
            out += [
                ReplayTarget(t.event_id, t.source, n, None, k)
                for n, k in zip(names, keys, strict=True)
            ]
        known = {d.name for d in settings.destinations}
        kept = [t for t in out if t.destination in known]
        return kept, len(out) - len(kept)

    async def pause(self, name: str, reason: str, who: Who) -> bool:
        if name not in self._scheduler.lanes:
            return False
        await self._scheduler.pause(name, reason)
        await self._audit(who, "pause", name, {"paused": True}, {"reason": reason})
        return True

    async def resume(self, name: str, who: Who) -> bool:
        if name not in self._scheduler.lanes:
            return False
        await self._scheduler.resume(name)
        await self._audit(who, "resume", name, {"paused": False})
        return True

    async def reload(self, who: Who) -> str | None:
        problem = await self._reload()
        result = {"reloaded": problem is None, "error": problem, "digest": self._digest()}
        await self._audit(who, "reload", None, result)
        return problem

    async def prune(self, who: Who) -> dict[str, int]:
        counts = await Pruner(self._settings().retention, self._store).prune_once()
        await self._audit(who, "prune", None, dict(counts))
        return counts

    async def audit(
        self, who: Who, action: str, target: str | None, result: dict[str, Any]
    ) -> None:
        await self._audit(who, action, target, result)

    async def catch_up(
        self, source: str, since: float, until: float, dry_run: bool, who: Who
    ) -> Report:
        if self._catch_up is None:
            raise LookupError("catch-up is not running")
        return await self._catch_up.manual(source, since, until, dry_run, who.actor, who.origin)

    async def _audit(
        self,
        who: Who,
        action: str,
        target: str | None,
        result: dict[str, Any],
        params: dict[str, object] | None = None,
    ) -> None:
        """Record it; an audit row that cannot be written (a full disk) is logged, and the
        action it describes, already done, stands."""
        try:
            await self._store.audit(
                Action(who.actor, who.origin, action, target, params or {}), result, time.time()
            )
        except StorageUnavailable as exc:
            log.error("audit.not_recorded", extra={"fields": {"action": action, "error": str(exc)}})

    def _digest(self) -> str | None:
        """The config file's SHA-256, so the audit trail says which config was loaded."""
        path = self._config_path()
        if path is None:
            return None
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return None

    async def metrics(self) -> tuple[bytes, str]:
        lanes = [(v.name, v.circuit or "closed", v.paused is not None) for v in self.destinations()]
        gauges = await self._store.gauges()
        self._metrics.agent_gauges(self.agents())
        self._metrics.refresh(gauges, lanes, self._store.size(), self._full(), time.time())
        return self._metrics.exposition()


def _inputs(found: tuple[str | None, str, bytes]) -> tuple[CIMultiDict[str], Parsed]:
    """Stored headers (a JSON list of pairs) and body, as routes and rules read them."""
    _, headers, body = found
    return CIMultiDict((str(k), str(v)) for k, v in json.loads(headers)), Parsed(body)


def _params(sel: ReplaySelection) -> dict[str, object]:
    """What was asked, for the audit trail: the fields that were set."""
    defaults = ReplaySelection()
    return {k: v for k, v in asdict(sel).items() if v != getattr(defaults, k)}


def _describe(sel: ReplaySelection) -> str:
    if sel.event is not None:
        return f"event {sel.event}"
    if sel.delivery is not None:
        return f"delivery {sel.delivery}"
    return f"{sel.state} deliveries" + (f" to {sel.destination}" if sel.destination else "")
