"""Catch-up: what a provider sent while relay was down or unreachable, fetched back from
its own API, once (docs/operations.md, "After an outage"; docs/providers.md per provider).

Each running relay beats (``heartbeats``) every ``plan.BEAT`` seconds. At start, for each
source with ``[sources.catch_up]`` and ``automatic``, the time since the newest beat is a
**downtime** window, recorded in ``catch_ups`` (once, even if several relays start after
the same outage); every ``interval`` an **interval** window over the recent past is
recorded too; ``relay catch-up`` records a **manual** one. A loop runs the open windows
(on a shared database, on the relay that does housekeeping), oldest first, one at a time:

- **pulled** (Stripe): each listed event goes through the ingest path as an event of the
  source with ``origin = "catch-up"``, deduplicated by its id like any webhook;
- **pushed** (GitHub, Paddle, Svix): relay asks the provider to send again what it has no
  event for, and the redeliveries arrive as ordinary signed webhooks.

A window stays ``open`` until its run ends, so a run cut short (SIGKILL, a restart) runs
again at the next start; running again stores nothing twice (the keys) and asks only for
what is still missing. Each run is an audit row, counted in
``relay_catch_up_events_total`` and ``relay_catch_up_runs_total``; an automatic run that
fails alerts (``kind = "catch_up"``) and is tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import aiohttp

from relay.catchup import github, paddle, plan, stripe, svix
from relay.catchup.api import Api, ProviderError
from relay.catchup.target import Found
from relay.config import Settings
from relay.configtypes import CatchUpConfig
from relay.errors import StorageUnavailable
from relay.ingress import Ingress, NotAdmitted
from relay.metrics import Metrics
from relay.records import Action, Tally, Window
from relay.store import Store

log = logging.getLogger("relay.catchup")

PROVIDERS: dict[str, ModuleType] = {
    "stripe": stripe,
    "github": github,
    "paddle": paddle,
    "svix": svix,
}
PULLED = {"stripe"}
TICK = 5.0  # seconds between looks for open windows


@dataclass(frozen=True, slots=True)
class Report:
    """One run, as ``relay catch-up`` and ``POST /api/catch-up`` say it."""

    source: str
    provider: str
    since: float
    until: float
    tally: Tally
    dry_run: bool = False
    error: str | None = None
    notes: tuple[str, ...] = ()

    def text(self) -> str:
        t = self.tally
        if self.provider in PULLED:
            said = f"fetched {t.fetched}, new {t.new}, already had {t.known}"
        else:
            said = f"fetched {t.fetched}, already had {t.known}"
            verb = "would be requested" if self.dry_run else "requested"
            said += f", redelivery {verb} for {t.requested}"
        if self.dry_run and self.provider in PULLED:
            said += " (dry run: nothing stored)"
        return said

    def as_dict(self) -> dict[str, Any]:
        t = self.tally
        return {
            "source": self.source,
            "provider": self.provider,
            "since": self.since,
            "until": self.until,
            "dry_run": self.dry_run,
            "fetched": t.fetched,
            "new": t.new,
            "known": t.known,
            "requested": t.requested,
            "notes": list(self.notes),
            "error": self.error,
            "text": self.text(),
        }


class _Target:
    """A source, as a provider's run sees it (relay.catchup.target.Target)."""

    def __init__(self, source: str, dry_run: bool, store: Store, ingress: Ingress) -> None:
        self.source = source
        self.dry_run = dry_run
        self._store = store
        self._ingress = ingress

    async def known(self, keys: list[str]) -> set[str]:
        if not keys:
            return set()
        source = self.source
        return await self._store.read(lambda r: r.known_keys(source, keys))

    async def admit(self, body: bytes) -> bool:
        stored = await self._ingress.admit_fetched(self.source, body)
        return not stored.duplicate


@dataclass(slots=True)
class _Schedule:
    """When each source's next interval window is due, and when a failed window may be
    tried again (in memory: after a restart, open windows run at once)."""

    interval_due: dict[str, float] = field(default_factory=dict)
    retry_at: dict[int, float] = field(default_factory=dict)


class CatchUp:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        ingress: Ingress,
        metrics: Metrics,
        alert: Callable[[str, dict[str, Any]], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._ingress = ingress
        self._metrics = metrics
        self._alert = alert
        self._clock = clock
        self._lock = asyncio.Lock()  # one run at a time: the provider's limits are shared
        self._schedule = _Schedule()
        self.node = uuid.uuid4().hex[:12]
        self.started = clock()
        self._configs: dict[str, tuple[str, CatchUpConfig]] = {}
        self.update(settings)

    def update(self, settings: Settings) -> None:
        """A reloaded config: sources with catch_up, and their provider."""
        found = {}
        for source in settings.sources:
            api = type(source).catch_up_api
            if source.catch_up is not None and api is not None:
                found[source.name] = (api, source.catch_up)
        self._configs = found

    @property
    def sources(self) -> dict[str, tuple[str, CatchUpConfig]]:
        return self._configs

    # -- the heartbeat and the automatic windows -------------------------------------------

    async def found_downtime(self, last_beat: float | None) -> int:
        """Record the downtime window of every automatic source (``last_beat`` was read
        before this relay's first beat); how many were recorded."""
        recorded = 0
        for name, (_, config) in self._configs.items():
            window = plan.downtime(name, last_beat, self.started)
            if window is None or not config.automatic:
                continue
            if await self._store.open_window(window, self._clock()) is not None:
                recorded += 1
                fields = {"source": name, "since": window.since, "until": window.until}
                log.info("catch_up.downtime", extra={"fields": fields})
        return recorded

    async def beat(self) -> None:
        """Beat every plan.BEAT seconds, whatever happens (until cancelled)."""
        while True:
            # When storage is down its own alarms speak; the next beat tries again.
            with contextlib.suppress(StorageUnavailable):
                await self._store.beat(self.node, self.started, self._clock())
            await asyncio.sleep(plan.BEAT)

    async def loop(self, housekeeping: Callable[[], bool]) -> None:
        """Record interval windows when due and run the open ones (until cancelled)."""
        while True:
            try:
                await self._tick(housekeeping())
            except StorageUnavailable:
                pass
            except Exception:  # a bug must not end catch-up for good: say it, go on
                log.exception("catch_up.failed_unexpectedly")
            await asyncio.sleep(TICK)

    async def _tick(self, housekeeping: bool) -> None:
        now = self._clock()
        due = self._schedule.interval_due
        for name, (_, config) in self._configs.items():
            if not config.automatic:
                continue
            when = due.setdefault(name, now + config.interval)
            if now >= when:
                due[name] = now + config.interval
                if housekeeping:
                    await self._store.open_window(plan.periodic(name, now, config.interval), now)
        if not housekeeping:
            return
        windows = [
            w
            for w in await self._store.open_windows()
            if self._schedule.retry_at.get(w.id or 0, 0.0) <= now
        ]
        for window in [w for w in windows if w.source not in self._configs]:
            assert window.id is not None
            gone = "the source has no [sources.catch_up] any more"
            await self._store.close_window(window.id, "failed", Tally(), gone, now)
        windows = [w for w in windows if w.source in self._configs]
        for run in plan.merge(windows):
            async with self._lock:
                await self._run(run, automatic=True)

    # -- runs ------------------------------------------------------------------------------

    async def manual(
        self, source: str, since: float, until: float, dry_run: bool, actor: str, origin: str | None
    ) -> Report:
        """``relay catch-up``: one window now. LookupError when the source has no
        catch_up; ValueError for a window that makes no sense."""
        if source not in self._configs:
            raise LookupError(f"source {source} has no [sources.catch_up]")
        now = self._clock()
        if until <= since:
            raise ValueError("until must be after since")
        if since > now:
            raise ValueError("since is in the future")
        window = Window(source, since, min(until, now + plan.MARGIN), "manual")
        async with self._lock:
            if dry_run:
                return await self._attempt(window, dry_run=True)
            window_id = await self._store.open_window(window, now)
            assert window_id is not None  # only a downtime window can be refused as seen
            recorded = Window(source, window.since, window.until, "manual", window_id)
            run = plan.Run(source, window.since, window.until, (recorded,))
            return await self._run(run, automatic=False, actor=actor, origin=origin)

    async def _run(
        self,
        run: plan.Run,
        automatic: bool,
        actor: str = "relay",
        origin: str | None = "catch-up",
    ) -> Report:
        window = Window(run.source, run.since, run.until, run.reason)
        for part in run.windows:
            assert part.id is not None
            await self._store.tried_window(part.id)
        report = await self._attempt(window, dry_run=False)
        now = self._clock()
        tries = max(w.tries for w in run.windows) + 1
        state = "done"
        if report.error is not None:
            configured = self._configs.get(run.source)
            auto = automatic and configured is not None and configured[1].automatic
            state = plan.after_failure(Window(run.source, 0, 0, run.reason, tries=tries), auto)
        for part in run.windows:
            assert part.id is not None
            await self._store.close_window(part.id, state, report.tally, report.error, now)
            if state == "open":
                interval = self._configs[run.source][1].interval
                self._schedule.retry_at[part.id] = now + interval
            else:
                self._schedule.retry_at.pop(part.id, None)
        self._count(report, state)
        params = {"since": run.since, "until": run.until, "reason": run.reason, "tries": tries}
        result = report.as_dict() | {"state": state}
        action = Action(actor, origin, "catch-up", run.source, params)
        try:
            await self._store.audit(action, result, now)
        except StorageUnavailable:
            log.error("catch_up.audit_failed", extra={"fields": {"source": run.source}})
        if report.error is not None and automatic and self._alert is not None:
            text = f"catch-up of {run.source} failed: {report.error}"
            await self._alert(run.source, {**result, "text": text})
        return report

    async def _attempt(self, window: Window, dry_run: bool) -> Report:
        """Fetch one window from the provider; the report says what happened."""
        api_name, config = self._configs[window.source]
        provider = PROVIDERS[api_name]
        now = self._clock()
        fields: dict[str, Any] = {"source": window.source, "reason": window.reason}
        kept = plan.within_retention(window.since, window.until, now, provider.RETENTION)
        if kept is None:
            days = round(provider.RETENTION / 86400)
            error = f"the window is older than {api_name} keeps ({days} days): nothing to fetch"
            return Report(
                window.source, api_name, window.since, window.until, Tally(), dry_run, error
            )
        since, note = kept
        notes = (note,) if note else ()
        window = Window(window.source, since, window.until, window.reason)
        target = _Target(window.source, dry_run, self._store, self._ingress)
        try:
            async with aiohttp.ClientSession() as session:
                api = Api(
                    session,
                    api_name,
                    config.base_url or provider.BASE_URL,
                    provider.headers(config),
                )
                found: Found = await provider.run(api, config, window, target)
        except (ProviderError, NotAdmitted, StorageUnavailable, ValueError) as exc:
            log.warning("catch_up.failed", extra={"fields": fields | {"error": str(exc)}})
            return Report(
                window.source,
                api_name,
                window.since,
                window.until,
                Tally(),
                dry_run,
                str(exc),
                notes,
            )
        report = Report(
            window.source,
            api_name,
            window.since,
            window.until,
            found.tally,
            dry_run,
            None,
            notes + found.notes,
        )
        log.info("catch_up.done", extra={"fields": fields | {"found": report.text()}})
        return report

    def _count(self, report: Report, state: str) -> None:
        m = self._metrics
        t = report.tally
        for outcome, n in (("new", t.new), ("known", t.known), ("requested", t.requested)):
            if n:
                m.catch_up_events.labels(report.source, outcome).inc(n)
        m.catch_up_runs.labels(report.source, "failed" if report.error else "done").inc()
