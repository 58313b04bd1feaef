"""The PostgreSQL store: several relays on one database, with SQLite's guarantees.

``PgStore`` implements ``relay.store.base.Store``. Its writes go through one ``PgWriter``
per relay (group commit, as on SQLite); the scheduler's short reads use a few connections;
people's reads (``relay.store.reader``) run on a read-only connection in a thread. What is
different from SQLite, because other relays share the tables:

- no lease is released at start (another relay may be sending it); an expired lease is
  taken again by whichever relay claims first;
- no delivery is handed over at commit: every delivery is claimed, so a destination's
  ``max_concurrency`` and ``rate_limit`` count the whole cluster (``PgWriter._claim``);
- lanes are woken by LISTEN/NOTIFY from other relays' commits, and by polling for due work
  (every ``POLL`` seconds; every ``POLL_ALONE`` when notifications do not arrive: the
  listening connection dropped, or a pooler that does not forward them);
- the scheduler's short reads use a few connections of relay's own (``reads``: replaced,
  never repaired, when the server restarts);
- housekeeping (retention, alert checks, the size watch) runs on one relay at a time, the
  holder of a session advisory lock; when that relay dies, its session ends and another
  takes the lock at its next look;
- the scheduler's clock is the database's: the offset is measured at start and again at
  each poll, so leases and retries mean the same time on every relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from relay import sql
from relay.configtypes import shown_url
from relay.errors import StorageError, StorageUnavailable
from relay.log import Fault, brief
from relay.pgdriver import driver
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
from relay.store.clauses import POSTGRESQL
from relay.store.postgresql.database import connect, connect_async, migrate
from relay.store.postgresql.reads import ReadConnections
from relay.store.postgresql.writer import CHANNEL, PgWriter
from relay.store.reader import SqlReader
from relay.store.recent import RecentEvents

T = TypeVar("T")
log = logging.getLogger("relay.store")

__all__ = ["PgReader", "PgStore", "read_only"]

POLL = 5.0  # seconds between looks for due work while notifications arrive
POLL_ALONE = 1.0  # … and while they do not
HOUSEKEEPING_LOCK = "relay.housekeeping"
OFFSET_SAMPLES = 5  # round trips per clock measurement
CONTROL = "relay_control"  # a destination was paused or resumed, or its circuit changed


class PgReader(SqlReader):
    def __init__(self, conn: Any) -> None:
        super().__init__(conn, POSTGRESQL)

    def backup(self, target: Path) -> int:
        raise StorageError(
            "on PostgreSQL, back up with the server's tools: pg_dump --format=custom "
            f"--file={target} '<storage.url>' (restore with pg_restore; see docs/scale-out.md)"
        )


@contextlib.contextmanager
def read_only(url: str) -> Iterator[PgReader]:
    conn = connect(url, read_only=True)
    try:
        yield PgReader(conn)
    finally:
        conn.close()


class PgStore:
    """See the module docstring and ``relay.store.base.Store``."""

    released = 0  # never: other relays' leases are theirs
    shared = True  # several relays may use this database at once

    def __init__(
        self, config: StorageConfig, url: str, writer_conn: Any, pool: ReadConnections
    ) -> None:
        self._url = url
        self._config = config
        self.instance = uuid.uuid4().hex[:12]
        self._listeners: list[Callable[[set[str]], None]] = []
        self._recent = RecentEvents()  # what this relay received: no read for its delivery
        self._control_listeners: list[Callable[[], None]] = []
        self._writer = PgWriter(
            url,
            writer_conn,
            config.max_batch,
            self._committed,
            config.keep_rejections,
            self.instance,
        )
        self._pool = pool
        self._q = sql.queries("postgresql")
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._size = 0
        self.clock_offset = 0.0
        self.notified = False  # notifications from this database arrive here
        self.housekeeping = False  # this relay holds the housekeeping lock
        self._fault = Fault(log, "store.listen")

    @property
    def hand_off(self) -> HandOff | None:
        return None

    @hand_off.setter
    def hand_off(self, value: HandOff | None) -> None:
        """Ignored: with several relays every delivery is claimed (see the module doc)."""

    @classmethod
    async def open(cls, config: StorageConfig) -> PgStore:
        assert config.url is not None
        url = config.url.value
        psycopg = driver()
        conn = await connect_async(url)
        pool = ReadConnections(url)
        try:
            await migrate(conn, url)
            async with pool.connection():
                pass  # the reads can connect too
        except (psycopg.Error, StorageUnavailable) as exc:
            await conn.close()
            await pool.close()
            raise StorageError(f"storage.url {shown_url(url)}: {exc}") from None
        except BaseException:
            await conn.close()
            await pool.close()
            raise
        store = cls(config, url, conn, pool)
        store.clock_offset = await store._measure_offset()
        size = await store._read(store._q["database_size"])
        store._size = int(size[0][0])
        return store

    async def _measure_offset(self) -> float:
        """Database clock minus ours, from the middle of the shortest of a few round trips
        (a busy event loop stretches some of them; the shortest is the most exact)."""
        best: tuple[float, float] | None = None
        async with self._pool.connection() as conn:
            for _ in range(OFFSET_SAMPLES):
                before = time.time()
                cur = await conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
                after = time.time()
                row = await cur.fetchone()
                sample = (after - before, float(row[0]) - (before + after) / 2)
                if best is None or sample[0] < best[0]:
                    best = sample
        assert best is not None
        return best[1]

    def start(self) -> None:
        self._task = asyncio.create_task(self._writer.run(), name="relay-writer")
        self._watch = asyncio.create_task(self._listen(), name="relay-listen")

    def add_listener(self, listener: Callable[[set[str]], None]) -> None:
        self._listeners.append(listener)

    def add_control_listener(self, listener: Callable[[], None]) -> None:
        self._control_listeners.append(listener)

    def _committed(self, events: list[NewEvent], woken: set[str]) -> None:
        for event in events:
            if event.destinations:
                self._recent.add(event)
        if woken:
            self._wake(woken)

    def _wake(self, names: set[str]) -> None:
        for listener in self._listeners:
            listener(names)

    # -- notifications, polling and housekeeping -------------------------------------------

    async def _listen(self) -> None:
        """Hold a connection that LISTENs and owns the housekeeping lock when it can; look
        for due work every POLL seconds (POLL_ALONE while notifications do not arrive).
        Reconnect when the connection drops; poll meanwhile."""
        while True:
            conn = None
            try:
                conn = await connect_async(self._url)
                await conn.execute(f"LISTEN {CHANNEL}")
                await conn.execute(f"LISTEN {CONTROL}")
                self.notified = await self._notifications_arrive(conn)
                if self._fault.since is not None:
                    self._fault.cleared(time.monotonic())
                await self._serve(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.notified = self.housekeeping = False
                self._fault.failed(f"{type(exc).__name__}: {exc}", time.monotonic())
                await self._poll_once()
                await asyncio.sleep(POLL_ALONE)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def _notifications_arrive(self, conn: Any) -> bool:
        """Whether a notification sent through the writer's side comes back to this
        listening connection (behind a transaction pooler it does not)."""
        probe = f"probe|{self.instance}|{uuid.uuid4().hex[:8]}"
        async with self._pool.connection() as other:
            await other.execute("SELECT pg_notify(%s, %s)", (CONTROL, probe))
        async for note in conn.notifies(timeout=2.0):
            if note.payload == probe:
                return True
        log.warning(
            "store.no_notifications",
            extra={"fields": {"hint": f"polling for work every {POLL_ALONE}s instead"}},
        )
        return False

    async def _serve(self, conn: Any) -> None:
        while True:
            every = POLL if self.notified else POLL_ALONE
            async for note in conn.notifies(timeout=every):
                self._notified(note.channel, note.payload)
            await self._housekeep(conn)
            await self._poll_once()

    def _notified(self, channel: str, payload: str) -> None:
        if channel == CONTROL:
            if not payload.startswith("probe|"):
                for listener in self._control_listeners:
                    listener()
            return
        instance, _, names = payload.partition("|")
        if instance == self.instance:
            return  # this relay's own commit woke its lanes already
        if names == "*":
            self._wake({"*"})
        elif names:
            self._wake(set(names.split(",")))

    async def _housekeep(self, conn: Any) -> None:
        if not self.housekeeping:
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))", (HOUSEKEEPING_LOCK,)
            )
            row = await cur.fetchone()
            if row and row[0]:
                self.housekeeping = True
                log.info("store.housekeeping", extra={"fields": {"instance": self.instance}})

    async def _poll_once(self) -> None:
        """Wake the lanes with due work, wherever it was committed; refresh the clock."""
        try:
            self.clock_offset = await self._measure_offset()
            now = time.time() + self.clock_offset
            async with self._pool.connection() as conn:
                cur = await conn.execute(self._q["due_destinations"], {"now": now})
                due = {row[0] for row in await cur.fetchall()}
                cur = await conn.execute(self._q["database_size"])
                size = await cur.fetchone()
                self._size = int(size[0]) if size else self._size
        except (driver().Error, StorageUnavailable):
            return  # the listener's fault says so; the next poll tries again
        if due:
            self._wake(due)
        for listener in self._control_listeners:
            listener()

    # -- the Store contract ----------------------------------------------------------------

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._task is not None:
            self._writer.stop()
            await self._task
        await self._writer.close()
        await self._pool.close()

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
        return await self._writer.claim(destination, now, limit, lease, limits)

    def held(self, destination: str) -> float | None:
        return self._writer.holds.get(destination)

    async def record(self, record: AttemptRecord) -> None:
        await self._writer.record(record)

    async def release(self, claim: Claim, now: float) -> None:
        params = {"id": claim.id, "lease": claim.lease, "now": now}
        statement = self._q["release_lease"]

        async def work(cur: Any) -> int:
            await cur.execute(statement, params)
            return int(cur.rowcount)

        await self._writer.call_async(work)

    async def _read(self, statement: str, params: Any = None) -> list[Any]:
        """A short read; StorageUnavailable when the database cannot answer. A read that
        fails on a kept connection (the server may have restarted since) is tried once more
        on a new one."""
        psycopg = driver()
        for fresh in (False, True):
            try:
                async with self._pool.connection(fresh) as conn:
                    cur = await conn.execute(statement, params)
                    rows: list[Any] = await cur.fetchall()
                    return rows
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if fresh:
                    raise StorageUnavailable(brief(str(exc))) from None
        raise AssertionError("unreachable")

    async def next_due(self, destination: str) -> float | None:
        rows = await self._read(self._q["next_due"], {"destination": destination})
        value = rows[0][0] if rows else None
        return float(value) if value is not None else None

    async def pending_count(self, destination: str) -> int:
        rows = await self._read(self._q["pending_count"], (destination,))
        return int(rows[0][0])

    async def load_events(self, event_ids: list[str]) -> dict[str, EventPayload]:
        found: dict[str, EventPayload] = {}
        missing = []
        for event_id in event_ids:
            recent = self._recent.get(event_id)
            if recent is not None:
                found[event_id] = recent
            else:
                missing.append(event_id)
        if missing:
            rows = await self._read(self._q["payloads"], {"ids": missing})
            found.update((row[0], EventPayload.from_row(row)) for row in rows)
        return found

    async def paused_destinations(self) -> dict[str, str | None]:
        rows = await self._read(self._q["destination_states"])
        return {row[0]: row[3] for row in rows if row[1]}

    async def set_paused(self, destination: str, paused: bool, reason: str | None) -> None:
        now = time.time() + self.clock_offset
        params = {
            "destination": destination,
            "paused": int(paused),
            "paused_at": now if paused else None,
            "reason": reason,
            "now": now,
        }
        statement = self._q["set_paused"]

        async def work(cur: Any) -> int:
            await cur.execute(statement, params)
            await cur.execute("SELECT pg_notify(%s, %s)", (CONTROL, destination))
            return int(cur.rowcount)

        await self._writer.call_async(work)

    async def circuits(self) -> dict[str, tuple[str, float | None, float | None]]:
        rows = await self._read(self._q["circuits"])
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    async def set_circuit(
        self, destination: str, state: str, opened_at: float | None, failing_since: float | None
    ) -> None:
        params = {
            "destination": destination,
            "circuit": state,
            "opened_at": opened_at,
            "failing_since": failing_since,
            "now": time.time() + self.clock_offset,
        }
        statement = self._q["set_circuit"]

        async def work(cur: Any) -> int:
            await cur.execute(statement, params)
            await cur.execute("SELECT pg_notify(%s, %s)", (CONTROL, destination))
            return int(cur.rowcount)

        await self._writer.call_async(work)

    async def replay(
        self,
        targets: list[ReplayTarget],
        action: Action,
        again: bool,
        now: float,
        summary: Mapping[str, object] | None = None,
    ) -> tuple[dict[str, object], bool]:
        # Replays take turns across the cluster (a lock first), and the other relays'
        # lanes of the destinations replayed to are woken (a notice at commit).
        manners = verbs.Manners(take_turns=True, tell=self.instance)

        async def work(cur: Any) -> tuple[dict[str, object], bool]:
            program = verbs.replay(manners, targets, action, again, now, summary)
            return await verbs.run_async(program, self._execute(cur))

        answer: tuple[dict[str, object], bool] = await self._writer.call_async(work)
        if answer[0].get("destinations"):
            self._wake(set(answer[0]["destinations"]))  # type: ignore[call-overload]
        return answer

    async def audit(self, action: Action, result: dict[str, object], now: float) -> None:
        async def work(cur: Any) -> int:
            return await verbs.run_async(verbs.audit(action, result, now), self._execute(cur))

        await self._writer.call_async(work)

    async def prune(self, kind: str, before: float, limit: int, now: float) -> int:
        async def work(cur: Any) -> int:
            program = verbs.prune(kind, before, limit, now)
            return await verbs.run_async(program, self._execute(cur))

        changed: int = await self._writer.call_async(work)
        return changed

    def _execute(self, cur: Any) -> Callable[[verbs.Step], Awaitable[Any]]:
        """A verb's steps on the writer's cursor."""
        q = self._q

        async def execute(step: verbs.Step) -> Any:
            await cur.execute(q[step.query], step.params)
            return await cur.fetchone() if step.want == "row" else int(cur.rowcount)

        return execute

    async def save_incident(self, incident: IncidentRecord) -> int:
        async def work(cur: Any) -> int:
            return await verbs.run_async(verbs.save_incident(incident), self._execute(cur))

        saved: int = await self._writer.call_async(work)
        return saved

    async def gauges(self) -> Gauges:
        pending = await self._read(self._q["gauges_pending"])
        dead = await self._read(self._q["gauges_dead"])
        size = await self._read(self._q["database_size"])
        self._size = int(size[0][0])
        return Gauges(
            {r[0]: (int(r[1]), float(r[2])) for r in pending}, {r[0]: int(r[1]) for r in dead}
        )

    def size(self) -> tuple[int, int]:
        """The database's size as of the last gauges (PostgreSQL's WAL is the server's)."""
        return self._size, 0

    # -- catch-up ----------------------------------------------------------------------------

    async def _write(self, statement: str, params: dict[str, Any]) -> list[Any]:
        async def work(cur: Any) -> list[Any]:
            await cur.execute(statement, params)
            return list(await cur.fetchall()) if cur.description else []

        rows: list[Any] = await self._writer.call_async(work)
        return rows

    async def beat(self, node: str, started: float, now: float) -> None:
        q = self._q

        async def work(cur: Any) -> None:
            await cur.execute(q["forget_beats"], {"before": now - BEATS_KEPT})
            await cur.execute(q["beat"], {"node": node, "started": started, "now": now})

        await self._writer.call_async(work)

    async def last_beat(self) -> float | None:
        rows = await self._read(self._q["last_beat"])
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def open_window(self, window: Window, now: float) -> int | None:
        rows = await self._write(self._q["catch_up_open"], window_row(window, now))
        return int(rows[0][0]) if rows else None

    async def open_windows(self) -> list[Window]:
        return [window_of(row) for row in await self._read(self._q["catch_ups_open"])]

    async def tried_window(self, window_id: int) -> None:
        await self._write(self._q["catch_up_tried"], {"id": window_id})

    async def close_window(
        self, window_id: int, state: str, tally: Tally, error: str | None, now: float
    ) -> None:
        row = closed_row(window_id, state, tally, error, now)
        await self._write(self._q["catch_up_close"], row)

    async def read(self, work: Callable[[Reader], T]) -> T:
        psycopg = driver()

        def run() -> T:
            try:
                with read_only(self._url) as reader:
                    return work(reader)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # The server went away mid-read: a 503 for the caller, not a bug.
                raise StorageUnavailable(brief(str(exc))) from None

        return await asyncio.to_thread(run)
