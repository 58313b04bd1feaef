"""Retention: old events, attempts and rejections pruned in the background, in small
batches, so the writer never holds a long transaction and ingest latency does not jump;
optional emptying of bodies once delivered; and the database size limit.

Each batch is one store operation (``Store.prune``: at most ``limit`` events, their
deliveries and attempts going with them), queued behind whatever ingest is waiting, and it
shares that transaction: a long batch would delay those requests' answers. So the batch
size adapts to keep each one near ``TARGET`` seconds (halved when slower, doubled when much
faster, never above ``batch``), and the pruner pauses between batches for nine times as
long as the last one took, so pruning uses at most a tenth of the writer's time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from relay.errors import StorageUnavailable
from relay.sections import RetentionConfig, StorageConfig
from relay.store import Store

log = logging.getLogger("relay.retention")

TARGET = 0.002  # seconds one batch may hold the writer
DUTY = 0.1  # share of the writer's time pruning may take: the pause is 9x the batch


class Pruner:
    def __init__(self, config: RetentionConfig, store: Store) -> None:
        self._config = config
        self._store = store  # with several relays, the one with ``housekeeping`` prunes

    @property
    def enabled(self) -> bool:
        c = self._config
        return any(
            v is not None
            for v in (
                c.delivered_after,
                c.dead_after,
                c.rejections_after,
                c.redact_after,
                c.audit_after,
                c.incidents_after,
            )
        )

    async def run(self) -> None:
        while True:
            try:
                if self._store.housekeeping:
                    await self.prune_once()
            except StorageUnavailable as exc:
                log.warning("retention.skipped", extra={"fields": {"error": str(exc)}})
            await asyncio.sleep(self._config.interval)

    async def prune_once(self, now: float | None = None) -> dict[str, int]:
        """One full pass; returns the rows deleted (or redacted) by kind."""
        c = self._config
        now = time.time() if now is None else now
        done: dict[str, int] = {}
        plan = [
            ("delivered", c.delivered_after),
            ("dead", c.dead_after),
            ("rejections", c.rejections_after),
            ("redacted", c.redact_after),
            ("audit", c.audit_after),
            ("incidents", c.incidents_after),
        ]
        for kind, age in plan:
            if age is None:
                continue
            total = 0
            size = min(c.batch, 50)
            while True:
                started = time.perf_counter()
                changed = await self._store.prune(kind, now - age, size, now)
                took = time.perf_counter() - started
                total += changed
                if changed < size:
                    break
                if took > 2 * TARGET:
                    size = max(1, size // 2)
                elif took < TARGET / 2:
                    size = min(c.batch, size * 2)
                await asyncio.sleep(max(0.005, took * (1 - DUTY) / DUTY))
            done[kind] = total
        if any(done.values()):
            log.info("retention.pruned", extra={"fields": done})
        return done


class SizeWatch:
    """Ingress answers 507 while database + WAL exceed ``storage.max_size``; once, on the
    way over, an error is logged and an alert sent (``alert(destination, payload)``)."""

    def __init__(
        self,
        config: StorageConfig,
        sizes: Callable[[], tuple[int, int]],
        alert: Callable[[dict[str, Any], str | None], Awaitable[None]],
        leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self._config = config
        self._sizes = sizes
        self._alert = alert
        self._leader = leader  # with several relays, one sends the alert; all refuse
        self.full = False

    async def run(self) -> None:
        while True:
            await self.look()
            await asyncio.sleep(1.0)

    async def look(self) -> None:
        limit = self._config.max_size
        assert limit is not None
        database, wal = self._sizes()
        full = database + wal > limit
        if full and not self.full:
            log.error(
                "storage.full", extra={"fields": {"bytes": database + wal, "max_size": limit}}
            )
        if full and not self.full and self._leader():
            await self._alert(
                {
                    "type": "storage.full",
                    "text": f"relay refuses new events: database is {database + wal}"
                    f" bytes, over storage.max_size ({limit}). Prune or raise the limit.",
                    "bytes": database + wal,
                    "max_size": limit,
                },
                self._config.alert,
            )
        elif self.full and not full:
            log.info("storage.ok", extra={"fields": {"bytes": database + wal}})
        self.full = full
