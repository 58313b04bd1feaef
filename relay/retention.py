"""Retention: old events, attempts and rejections pruned in the background, in small
batches, so the writer never holds a long transaction and ingest latency does not jump;
optional emptying of bodies once delivered; and the database size limit.

Each batch is one writer operation (a DELETE of at most ``batch`` events, their deliveries
and attempts going with them by ON DELETE CASCADE), queued behind whatever ingest is
waiting, and it shares that transaction: a long batch would delay those requests' answers.
So the batch size adapts to keep each one near ``TARGET`` seconds (halved when slower,
doubled when much faster, never above ``batch``), and the pruner pauses between batches
for nine times as long as the last one took, so pruning uses at most a tenth of the
writer's time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from relay import sql
from relay.config import RetentionConfig
from relay.errors import StorageUnavailable
from relay.store import Writer

log = logging.getLogger("relay.retention")

TARGET = 0.002  # seconds one batch may hold the writer
DUTY = 0.1  # share of the writer's time pruning may take: the pause is 9x the batch


def database_bytes(path: Path) -> tuple[int, int]:
    """(database file, WAL file) sizes in bytes."""

    def size(p: Path) -> int:
        try:
            return os.stat(p).st_size
        except OSError:
            return 0

    return size(path), size(path.with_name(path.name + "-wal"))


class Pruner:
    def __init__(self, config: RetentionConfig, writer: Writer) -> None:
        self._config = config
        self._writer = writer
        self._q = sql.queries()

    @property
    def enabled(self) -> bool:
        c = self._config
        return any(
            v is not None
            for v in (c.delivered_after, c.dead_after, c.rejections_after, c.redact_after)
        )

    async def run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except StorageUnavailable as exc:
                log.warning("retention.skipped", extra={"fields": {"error": str(exc)}})
            await asyncio.sleep(self._config.interval)

    async def prune_once(self, now: float | None = None) -> dict[str, int]:
        """One full pass; returns the rows deleted (or redacted) by kind."""
        c, q = self._config, self._q
        now = time.time() if now is None else now
        done: dict[str, int] = {}
        plan = [
            ("delivered", c.delivered_after, q["prune_delivered"]),
            ("dead", c.dead_after, q["prune_dead"]),
            ("rejections", c.rejections_after, q["prune_rejections"]),
            ("redacted", c.redact_after, q["redact_delivered"]),
        ]
        for kind, age, statement in plan:
            if age is None:
                continue
            total = 0
            size = min(c.batch, 50)
            while True:
                started = time.perf_counter()
                changed = await self._writer.execute(
                    statement, {"before": now - age, "batch": size, "now": now}
                )
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
