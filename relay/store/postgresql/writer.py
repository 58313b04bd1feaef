"""The PostgreSQL store's writer: the batches of ``relay.store.batch`` on one connection.

Each batch is one transaction (``synchronous_commit = on``), sent in pipeline mode where
psycopg can (``executemany``), so a batch of a hundred events costs a few round trips and
one commit. Other relays write the same tables at the same time; what keeps them apart:

- duplicates: the unique index decides (``ON CONFLICT DO NOTHING``), whichever relay the
  first copy reached;
- claims: ``FOR UPDATE SKIP LOCKED``, and each destination's claims take turns across the
  cluster (an advisory lock held to the end of the transaction), so its ``max_concurrency``
  counts every relay's leases and its token bucket lives in ``destination_state``. A batch
  takes those locks in the order of destination names, so two relays never wait on each
  other in a circle;
- outcomes: written only under the lease they came from (``lease_seq``), as on SQLite;
- wake-ups: ``pg_notify`` in the transaction that adds deliveries reaches every relay
  listening, when it commits.

When the server goes away (a restart, a failover), the connection is replaced, not repaired:
after any error that leaves it in a state other than idle outside a pipeline (psycopg can
leave an aborted pipeline behind, neither closed nor broken, on which every later query
fails), it is closed, and the next batch connects anew. A failed connection is a fault of
the database as a whole, like a lost one: the batch fails at once with 503s (not op by op,
which cost a connection attempt per queued request), and while the server is away a new
connection is tried at most every ``RECONNECT_GAP`` seconds; the batches in between fail
without trying.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from relay import sql
from relay.errors import StorageError, StorageUnavailable
from relay.pgdriver import driver
from relay.records import Claim, Limits, NewEvent
from relay.store.batch import (
    Batcher,
    Inserted,
    Kind,
    Op,
    attempt_row,
    decide_statuses,
    delivery_rows,
    event_row,
    finish_params,
    flatten,
    forgotten,
    rejection_row,
    stored_result,
    tracked,
)
from relay.store.postgresql.database import connect_async, known_good

log = logging.getLogger("relay.store")

CHANNEL = "relay_work"
MAX_NOTIFY = 7000  # bytes of a notification's payload (the server's limit is 8000)
CONCURRENCY_POLL = 0.05  # seconds a lane capped by the cluster's leases waits to look again
RECONNECT_GAP = 0.25  # seconds between connection attempts while the server is away


class PgWriter(Batcher):
    def __init__(
        self,
        url: str,
        conn: Any,
        max_batch: int,
        on_commit: Callable[[list[NewEvent], set[str]], None],
        keep_rejections: int,
        instance: str,
    ) -> None:
        super().__init__(max_batch, on_commit, keep_rejections)
        self._url = url
        self._conn: Any = conn
        self._q = sql.queries("postgresql")
        self._instance = instance
        self.holds: dict[str, float] = {}  # destination: when the cluster lets it claim again
        self._psycopg = driver()
        self._connect_after = 0.0  # time.monotonic() before which no new connection is tried
        self._connect_error = ""

    def _is_storage_fault(self, exc: BaseException) -> bool:
        """Connection lost or refused, server shutting down, disk full, out of resources:
        not one op's fault. A deadlock or serialization failure is retried op by op."""
        errors = self._psycopg.errors
        if isinstance(exc, errors.DeadlockDetected | errors.SerializationFailure):
            return False
        faults = (
            self._psycopg.OperationalError,
            self._psycopg.InterfaceError,
            errors.InsufficientResources,
            StorageError,  # connect_async could not connect
            StorageUnavailable,  # … and the next attempt is not due yet
        )
        return isinstance(exc, faults)

    async def _transaction(self, batch: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
        conn = await self._connection()
        try:
            async with conn.transaction():
                return await self._apply(conn, batch)
        except BaseException:
            if not known_good(conn):
                await self._discard()
            raise

    async def _connection(self) -> Any:
        """The writer's connection, or a new one when it is gone (see the module doc)."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if time.monotonic() < self._connect_after:
            raise StorageUnavailable(self._connect_error)
        try:
            self._conn = await connect_async(self._url)
        except StorageError as exc:
            self._connect_after = time.monotonic() + RECONNECT_GAP
            self._connect_error = str(exc)
            raise
        return self._conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # thrown away for being unusable
                await conn.close()

    async def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            await self._conn.close()

    async def _apply(self, conn: Any, batch: list[Op]) -> Inserted:
        q = self._q
        cur = conn.cursor()
        ingests = [op for op in batch if op.kind is Kind.INGEST]
        inserted = await self._insert_events(cur, ingests) if ingests else Inserted()
        records = [op.payload for op in batch if op.kind is Kind.RECORD]
        finished: list[tuple[str, str, float, float]] = []
        if records:
            await cur.executemany(q["insert_attempt"], [attempt_row(r) for r in records])
            params = [finish_params(r) for r in records]
            await cur.executemany(q["finish_attempt"], params, returning=True)
            for r in records:  # one result per record: empty when the outcome was stale
                row = await cur.fetchone()
                if row is not None:
                    finished.append((row[0], row[1], row[2], r.finished_at))
                cur.nextset()
        # Destination locks in name order: two relays' batches never wait in a circle.
        claims = sorted(
            (op for op in batch if op.kind is Kind.CLAIM), key=lambda op: op.payload["destination"]
        )
        for op in claims:
            op.result = await self._claim(cur, op.payload)
        for op in batch:
            if op.kind is Kind.CALL:
                op.result = await op.payload(cur)
        rejections = [op.payload for op in batch if op.kind is Kind.REJECT]
        if rejections:
            await cur.executemany(q["insert_rejection"], [rejection_row(r) for r in rejections])
            await cur.execute(q["trim_rejections"], {"keep": self._keep_rejections})
        counts, trim = self.tally(inserted.events, finished, rejections)
        if counts:
            # In key order: two relays adding to the same minutes never wait in a circle.
            await cur.executemany(q["add_minutes"], sorted(counts))
        if trim is not None:
            await cur.execute(q["trim_minutes"], {"before": trim})
        if records and self.holds:
            # Outcomes end leases: a lane held back by the cluster's max_concurrency may
            # claim again now, rather than at its next look.
            inserted.woken |= set(self.holds)
            self.holds.clear()
        if inserted.woken:
            await cur.execute(q["wake_lanes"], (self._notice(inserted.woken),))
        return inserted

    def _notice(self, destinations: set[str]) -> str:
        """``instance|a,b``: who committed (it woke its own lanes already) and for whom;
        ``*`` for everyone when the names do not fit in a notification."""
        names = ",".join(sorted(destinations))
        if len(names.encode()) > MAX_NOTIFY:
            names = "*"
        return f"{self._instance}|{names}"

    async def _insert_events(self, cur: Any, ops: list[Op]) -> Inserted:
        q = self._q
        events: list[NewEvent] = [op.payload for op in ops]
        rows = flatten(events)
        await cur.executemany(q["insert_event"], [event_row(e) for e in rows])
        inserted = {e.id for e in rows}
        keyed = [e.id for e in rows if e.idempotency_key is not None]
        if keyed:
            # The unique index decided, across every relay: an absent row was a duplicate.
            await cur.execute("SELECT id FROM events WHERE id = ANY(%s)", (keyed,))
            present = {row[0] for row in await cur.fetchall()}
            inserted -= set(keyed) - present
        gone = forgotten(events, inserted)
        if gone:
            await cur.executemany(q["forget_request"], [(x,) for x in gone])
            inserted -= set(gone)
        moving = [(e, t) for e in rows if e.id in inserted and (t := tracked(e)) is not None]
        if moving:  # statuses move in the order the events came
            pairs = sorted({t[:2] for _, t in moving})
            await cur.execute(q["lock_subjects"], ([f"{p} {s}" for p, s in pairs],))
            providers, subjects = [p for p, _ in pairs], [s for _, s in pairs]
            await cur.execute(q["statuses_of"], (providers, subjects))
            found = await cur.fetchall()
            moved, stale = decide_statuses(moving, {(p, s): r for p, s, r in found})
            if moved:
                await cur.executemany(q["set_status"], moved)
            if stale:
                await cur.executemany(q["mark_stale"], stale)
        for op, event in zip(ops, events, strict=True):
            original = None
            if event.id not in inserted:
                first = event.items[0] if event.items else event
                await cur.execute(q["find_original"], (first.source, first.idempotency_key))
                original = (await cur.fetchone())[0]
            op.result = stored_result(event, inserted, original)
        deliveries: list[tuple[str, str, float, float, float, str | None]] = []
        stored: list[NewEvent] = []
        for event in rows:
            if event.id in inserted:
                deliveries.extend(delivery_rows(event))
                stored.append(event)
        if deliveries:
            await cur.executemany(q["insert_delivery"], deliveries)
        return Inserted(stored, {}, {row[1] for row in deliveries})

    async def _claim(self, cur: Any, p: dict[str, Any]) -> list[Claim]:
        """Lease up to p['limit'] due deliveries, within the destination's limits for the
        whole cluster (p['limits']): the leases every relay holds, and its shared token
        bucket. When those hold it back, ``holds`` says until when."""
        q = self._q
        name, now, limit = p["destination"], p["now"], p["limit"]
        limits: Limits | None = p.pop("limits", None)
        if limits is None:  # SKIP LOCKED alone keeps two relays off the same delivery
            await cur.execute(q["claim_due"], p)
            return [Claim(*row) for row in await cur.fetchall()]
        await cur.execute(q["lock_destination"], (name,))
        hold: float | None = None
        tokens = 0.0
        if limits.rate is not None:
            burst = limits.burst or limits.rate
            await cur.execute(q["bucket"], (name,))
            row = await cur.fetchone()
            if row is None or row[0] is None:
                tokens = burst
            else:
                tokens = min(burst, row[0] + max(0.0, now - row[1]) * limits.rate)
            whole = math.floor(tokens)
            if whole < limit:
                limit = whole
                hold = now + (1.0 - (tokens - whole)) / limits.rate
        claims: list[Claim] = []
        if limit > 0:
            params = {**p, "limit": limit, "max_concurrency": limits.max_concurrency}
            await cur.execute(q["claim_due_capped"], params)
            rows = await cur.fetchall()
            if rows[0][0] < limit:  # other relays' leases left less room than asked
                soon = now + CONCURRENCY_POLL
                hold = soon if hold is None else min(hold, soon)
            claims = [Claim(*row[1:]) for row in rows if row[1] is not None]
        if limits.rate is not None:
            left = tokens - len(claims)
            await cur.execute(q["set_bucket"], {"destination": name, "now": now, "tokens": left})
        if hold is not None:
            self.holds[name] = hold
        else:
            self.holds.pop(name, None)
        return claims

    async def call_async(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run ``work(cursor)`` inside the next transaction; its result once committed."""
        return await self._submit(Kind.CALL, work)
