"""The SQLite store: one writer that group-commits, readers beside it, WAL in between.

``SqliteStore`` implements ``relay.store.base.Store``: ingest, claims and outcomes go
through the single ``Writer`` (``writer.py``); the scheduler's short reads use one aiosqlite
connection; people's reads (``reader.py``) run on a fresh read-only connection in a thread.
Opening takes the database's lock file, migrates, and releases the leases of the previous
process (``files.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from relay import sql
from relay.errors import StorageError
from relay.records import (
    Action,
    AttemptRecord,
    Claim,
    EventPayload,
    Gauges,
    IncidentRecord,
    Limits,
    NewEvent,
    Rejection,
    ReplayTarget,
    Stored,
    Tally,
    Window,
)
from relay.sections import StorageConfig
from relay.store import verbs
from relay.store.base import HandOff, Reader
from relay.store.batch import BEATS_KEPT, closed_row, window_of, window_row
from relay.store.recent import RecentEvents
from relay.store.sqlite import files
from relay.store.sqlite.files import migrate
from relay.store.sqlite.reader import SqliteReader, read_only
from relay.store.sqlite.writer import Writer

T = TypeVar("T")

__all__ = ["SqliteReader", "SqliteStore", "migrate", "read_only"]


class SqliteStore:
    """See the module docstring and ``relay.store.base.Store``."""

    shared = False  # the lock file keeps every other relay out
    clock_offset = 0.0
    housekeeping = True

    def __init__(
        self,
        writer_db: sqlite3.Connection,
        writer_thread: ThreadPoolExecutor,
        reader_db: aiosqlite.Connection,
        config: StorageConfig,
        lock: int | None = None,
        released: int = 0,
    ) -> None:
        self._lock = lock
        self._wdb = writer_db
        self._wthread = writer_thread
        self._rdb = reader_db
        self._listeners: list[Callable[[set[str]], None]] = []
        self._recent = RecentEvents()
        self._writer = Writer(
            writer_db, writer_thread, config.max_batch, self._committed, config.keep_rejections
        )
        self._task: asyncio.Task[None] | None = None
        self._q = sql.queries()
        self.path = config.path
        self.released = released

    @classmethod
    async def open(cls, config: StorageConfig) -> SqliteStore:
        """Open (creating if needed), lock, migrate; StorageError if impossible."""
        path = config.path
        files.create_private(path)
        lock = files.lock_database(path)  # before anything is read or changed
        loop = asyncio.get_running_loop()
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-writer")
        try:
            wdb, released = await loop.run_in_executor(thread, files.open_writer, path, config)
            rdb = await aiosqlite.connect(path, isolation_level=None)
            await rdb.execute(f"PRAGMA busy_timeout = {int(config.busy_timeout * 1000)}")
            await rdb.execute("PRAGMA query_only = ON")
        except sqlite3.DatabaseError as exc:
            thread.shutdown(wait=False)
            os.close(lock)
            raise StorageError(files.open_failure(path, exc)) from None
        except BaseException:
            thread.shutdown(wait=False)
            os.close(lock)
            raise
        return cls(wdb, thread, rdb, config, lock, released)

    @property
    def hand_off(self) -> HandOff | None:
        return self._writer.hand_off

    @hand_off.setter
    def hand_off(self, value: HandOff | None) -> None:
        self._writer.hand_off = value

    def start(self) -> None:
        self._task = asyncio.create_task(self._writer.run(), name="relay-writer")

    def add_listener(self, listener: Callable[[set[str]], None]) -> None:
        self._listeners.append(listener)

    def add_control_listener(self, listener: Callable[[], None]) -> None:
        """Nobody else changes this database's destinations."""

    def _committed(self, events: list[NewEvent], woken: set[str]) -> None:
        """After a commit: keep the new payloads at hand, and wake the lanes that have
        new deliveries to claim (those handed over already have theirs)."""
        for event in events:
            if event.destinations:
                self._recent.add(event)
        if woken:
            for listener in self._listeners:
                listener(woken)

    async def close(self) -> None:
        """Commit what is queued, checkpoint the WAL, close, and release the lock."""
        if self._task is not None:
            self._writer.stop()
            await self._task
        await self._rdb.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._wthread, files.close_writer, self._wdb)
        self._wthread.shutdown(wait=True)
        if self._lock is not None:
            os.close(self._lock)  # releases the flock: another relay may start now
            self._lock = None

    @property
    def healthy(self) -> bool:
        return self._writer.healthy and self._task is not None and not self._task.done()

    @property
    def last_error(self) -> str | None:
        return self._writer.last_error

    async def check(self, wait: float) -> str | None:
        if self._task is None or self._task.done():
            return "writer stopped"
        return await self._writer.check(wait)

    # -- the hot paths ---------------------------------------------------------------------

    async def ingest(self, event: NewEvent) -> Stored:
        return await self._writer.ingest(event)

    def note_rejection(self, rejection: Rejection) -> None:
        self._writer.note_rejection(rejection)

    @property
    def rejections_dropped(self) -> int:
        return self._writer.rejections_dropped

    async def claim(
        self, destination: str, now: float, limit: int, lease: float, limits: Limits | None = None
    ) -> list[Claim]:
        """``limits`` are the lane's to apply: no other relay claims here."""
        return await self._writer.claim(destination, now, limit, lease)

    def held(self, destination: str) -> float | None:
        return None

    async def record(self, record: AttemptRecord) -> None:
        await self._writer.record(record)

    async def release(self, claim: Claim, now: float) -> None:
        params = {"id": claim.id, "lease": claim.lease, "now": now}
        statement = self._q["release_lease"]
        await self._writer.call(lambda db: db.execute(statement, params).rowcount)

    async def next_due(self, destination: str) -> float | None:
        params = {"destination": destination}
        rows = list(await self._rdb.execute_fetchall(self._q["next_due"], params))
        value = rows[0][0] if rows else None
        return float(value) if value is not None else None

    async def pending_count(self, destination: str) -> int:
        rows = list(await self._rdb.execute_fetchall(self._q["pending_count"], (destination,)))
        return int(rows[0][0])

    async def load_events(self, event_ids: list[str]) -> dict[str, EventPayload]:
        """The recent ones from memory, the rest in one read (a backlog drain would
        otherwise pay one thread round trip per delivery)."""
        found: dict[str, EventPayload] = {}
        missing = []
        for event_id in event_ids:
            recent = self._recent.get(event_id)
            if recent is not None:
                found[event_id] = recent
            else:
                missing.append(event_id)
        if missing:
            params = {"ids": json.dumps(missing)}
            for row in await self._rdb.execute_fetchall(self._q["payloads"], params):
                found[row[0]] = EventPayload.from_row(row)
        return found

    # -- operators' changes ----------------------------------------------------------------

    async def paused_destinations(self) -> dict[str, str | None]:
        rows = await self._rdb.execute_fetchall(self._q["destination_states"])
        return {row[0]: row[3] for row in rows if row[1]}

    async def set_paused(self, destination: str, paused: bool, reason: str | None) -> None:
        now = time.time()
        params = {
            "destination": destination,
            "paused": int(paused),
            "paused_at": now if paused else None,
            "reason": reason,
            "now": now,
        }
        statement = self._q["set_paused"]
        await self._writer.call(lambda db: db.execute(statement, params).rowcount)

    async def circuits(self) -> dict[str, tuple[str, float | None, float | None]]:
        return {}

    async def set_circuit(
        self, destination: str, state: str, opened_at: float | None, failing_since: float | None
    ) -> None:
        """Alone on its database, a lane's circuit is the only one."""

    async def replay(
        self,
        targets: list[ReplayTarget],
        action: Action,
        again: bool,
        now: float,
        summary: Mapping[str, object] | None = None,
    ) -> tuple[dict[str, object], bool]:
        # One transaction: nothing between the look for the request id and the insert (the
        # writer runs one at a time). The program is made inside it: a batch that fails is
        # retried op by op, and each try runs it from its start.
        return await self._writer.call(
            lambda db: verbs.run(
                verbs.replay(verbs.Manners(), targets, action, again, now, summary),
                self._execute(db),
            )
        )

    async def audit(self, action: Action, result: dict[str, object], now: float) -> None:
        await self._writer.call(
            lambda db: verbs.run(verbs.audit(action, result, now), self._execute(db))
        )

    async def prune(self, kind: str, before: float, limit: int, now: float) -> int:
        return await self._writer.call(
            lambda db: verbs.run(verbs.prune(kind, before, limit, now), self._execute(db))
        )

    def _execute(self, db: sqlite3.Connection) -> Callable[[verbs.Step], Any]:
        """A verb's steps on the writer's connection."""
        q = self._q

        def execute(step: verbs.Step) -> Any:
            cursor = db.execute(q[step.query], step.params if step.params is not None else ())
            return cursor.fetchone() if step.want == "row" else cursor.rowcount

        return execute

    async def gauges(self) -> Gauges:
        pending = await self._rdb.execute_fetchall(self._q["gauges_pending"])
        dead = await self._rdb.execute_fetchall(self._q["gauges_dead"])
        return Gauges(
            {r[0]: (int(r[1]), float(r[2])) for r in pending}, {r[0]: int(r[1]) for r in dead}
        )

    def size(self) -> tuple[int, int]:
        return database_bytes(self.path)

    async def save_incident(self, incident: IncidentRecord) -> int:
        return await self._writer.call(
            lambda db: verbs.run(verbs.save_incident(incident), self._execute(db))
        )

    # -- catch-up ----------------------------------------------------------------------------

    async def beat(self, node: str, started: float, now: float) -> None:
        q = self._q
        row = {"node": node, "started": started, "now": now}
        old = {"before": now - BEATS_KEPT}

        def work(db: sqlite3.Connection) -> int:
            db.execute(q["forget_beats"], old)
            return db.execute(q["beat"], row).rowcount

        await self._writer.call(work)

    async def last_beat(self) -> float | None:
        rows = list(await self._rdb.execute_fetchall(self._q["last_beat"]))
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def open_window(self, window: Window, now: float) -> int | None:
        row = window_row(window, now)
        statement = self._q["catch_up_open"]

        def work(db: sqlite3.Connection) -> int | None:
            cursor = db.execute(statement, row)
            return cursor.lastrowid if cursor.rowcount else None

        return await self._writer.call(work)

    async def open_windows(self) -> list[Window]:
        rows = await self._rdb.execute_fetchall(self._q["catch_ups_open"])
        return [window_of(row) for row in rows]

    async def tried_window(self, window_id: int) -> None:
        statement = self._q["catch_up_tried"]
        await self._writer.call(lambda db: db.execute(statement, {"id": window_id}).rowcount)

    async def close_window(
        self, window_id: int, state: str, tally: Tally, error: str | None, now: float
    ) -> None:
        row = closed_row(window_id, state, tally, error, now)
        statement = self._q["catch_up_close"]
        await self._writer.call(lambda db: db.execute(statement, row).rowcount)

    async def read(self, work: Callable[[Reader], T]) -> T:
        def run() -> T:
            with read_only(self.path) as reader:
                return work(reader)

        return await asyncio.to_thread(run)


def database_bytes(path: Path) -> tuple[int, int]:
    """(database file, WAL file) sizes in bytes."""

    def size(p: Path) -> int:
        try:
            return os.stat(p).st_size
        except OSError:
            return 0

    return size(path), size(path.with_name(path.name + "-wal"))
