"""The SQLite store's writer: the batches of ``relay.store.batch`` run on one thread.

Each batch is one call on the writer's own thread, which runs BEGIN IMMEDIATE … COMMIT with
the plain ``sqlite3`` module: one thread round trip per transaction, however many requests
it carries (aiosqlite would take one per statement). Readers use other connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from relay import sql
from relay.records import Claim, NewEvent
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


class Writer(Batcher):
    def __init__(
        self,
        db: sqlite3.Connection,
        thread: ThreadPoolExecutor,
        max_batch: int,
        on_commit: Callable[[list[NewEvent], set[str]], None],
        keep_rejections: int = 10_000,
    ) -> None:
        super().__init__(max_batch, on_commit, keep_rejections)
        self._db = db
        self._thread = thread
        self._q = sql.queries()

    async def _transaction(self, batch: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._run, batch, offers)

    def _is_storage_fault(self, exc: BaseException) -> bool:
        """Faults of the database as a whole (disk full, read-only, locked, I/O)."""
        return isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not (
            isinstance(
                exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
            )
        )

    def _is_lock(self, exc: BaseException) -> bool:
        return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))

    # -- on the writer's thread ------------------------------------------------------------

    def _run(self, batch: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
        """BEGIN … COMMIT for the whole batch; ROLLBACK and re-raise on any error."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            inserted = self._apply(batch, offers)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        return inserted

    def _apply(self, batch: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
        """The batch's statements; returns what its ingests stored."""
        db, q = self._db, self._q
        ingests = [op for op in batch if op.kind is Kind.INGEST]
        inserted = self._insert_events(ingests, offers) if ingests else Inserted()
        records = [op.payload for op in batch if op.kind is Kind.RECORD]
        finished: list[tuple[str, str, float, float]] = []
        if records:
            db.executemany(q["insert_attempt"], [attempt_row(r) for r in records])
            for r in records:  # one by one: a stale outcome changes (and counts) nothing
                row = db.execute(q["finish_attempt"], finish_params(r)).fetchone()
                if row is not None:
                    finished.append((row[0], row[1], row[2], r.finished_at))
        for op in batch:
            if op.kind is Kind.CLAIM:
                rows = db.execute(q["claim_due"], op.payload).fetchall()
                op.result = [Claim(*row) for row in rows]
            elif op.kind is Kind.CALL:
                op.result = op.payload(db)
        rejections = [op.payload for op in batch if op.kind is Kind.REJECT]
        if rejections:
            db.executemany(q["insert_rejection"], [rejection_row(r) for r in rejections])
            db.execute(q["trim_rejections"], {"keep": self._keep_rejections})
        counts, trim = self.tally(inserted.events, finished, rejections)
        db.executemany(q["add_minutes"], counts)
        if trim is not None:
            db.execute(q["trim_minutes"], {"before": trim})
        return inserted

    def _insert_events(self, ops: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
        db, q = self._db, self._q
        events: list[NewEvent] = [op.payload for op in ops]
        rows = flatten(events)
        db.executemany(q["insert_event"], [event_row(e) for e in rows])
        inserted = {e.id for e in rows}
        keyed = [e for e in rows if e.idempotency_key is not None]
        if keyed:
            # The UNIQUE index decided: an event whose row is absent was a duplicate.
            marks = ",".join("?" * len(keyed))
            present = db.execute(
                f"SELECT id FROM events WHERE id IN ({marks})",  # noqa: S608 - only '?' marks
                [e.id for e in keyed],
            ).fetchall()
            inserted -= {e.id for e in keyed} - {row[0] for row in present}
        gone = forgotten(events, inserted)
        if gone:
            db.executemany(q["forget_request"], [(x,) for x in gone])
            inserted -= set(gone)
        moving = [(e, t) for e in rows if e.id in inserted and (t := tracked(e)) is not None]
        if moving:  # statuses move in the order the events came
            keys = json.dumps(sorted({t[:2] for _, t in moving}))
            ranks = db.execute(q["statuses_of"], {"keys": keys}).fetchall()
            moved, stale = decide_statuses(moving, {(p, s): r for p, s, r in ranks})
            db.executemany(q["set_status"], moved)
            db.executemany(q["mark_stale"], stale)
        for op, event in zip(ops, events, strict=True):
            original = None
            if event.id not in inserted:
                first = event.items[0] if event.items else event
                cur = db.execute(q["find_original"], (first.source, first.idempotency_key))
                original = cur.fetchone()[0]
            op.result = stored_result(event, inserted, original)
        deliveries: list[tuple[str, str, float, float, float, str | None]] = []
        stored: list[NewEvent] = []
        for event in rows:
            if event.id in inserted:
                deliveries.extend(delivery_rows(event))
                stored.append(event)
        leased: dict[str, list[Claim]] = {}
        if offers:
            left = {name: count for name, (count, _) in offers.items()}
            plain = []
            for row in deliveries:
                name = row[1]
                if left.get(name, 0) > 0:
                    left[name] -= 1
                    lease_until = row[2] + offers[name][1]
                    found = db.execute(q["insert_delivery_leased"], (*row, lease_until))
                    claim = Claim(found.fetchone()[0], row[0], 1, row[2], 1)
                    leased.setdefault(name, []).append(claim)
                else:
                    plain.append(row)
            deliveries = plain
        if deliveries:
            db.executemany(q["insert_delivery"], deliveries)
        return Inserted(stored, leased, {row[1] for row in deliveries})
