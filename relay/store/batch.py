"""A store's single writer: operations queued, batched into shared transactions (group
commit), each caller answered only once its transaction committed.

Every write goes through one ``Batcher``: a single task drains a queue of pending writes and
commits them together in one transaction, and each caller awaits its own result, which is
set only after COMMIT returned. So an HTTP handler that awaits ``ingest()`` answers 2xx only
for an event that is durable, and a thousand concurrent requests cost a handful of commits
instead of a thousand. The backends (``sqlite.writer``, ``postgresql.writer``) run the
batches; pacing, health, probes and the hand-off at commit are the same for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from relay.errors import StorageUnavailable
from relay.log import Fault, brief
from relay.normalize.taxonomy import transition
from relay.records import (
    AttemptRecord,
    Claim,
    EventPayload,
    Limits,
    NewEvent,
    Rejection,
    Stored,
    Tally,
    Window,
)
from relay.store import rollup
from relay.store.base import HandOff

log = logging.getLogger("relay.store")
T = TypeVar("T")


@dataclass(slots=True)
class Inserted:
    """What a transaction's ingests stored."""

    events: list[NewEvent] = field(default_factory=list)  # new (not duplicates)
    leased: dict[str, list[Claim]] = field(default_factory=dict)  # handed over, by lane
    woken: set[str] = field(default_factory=set)  # lanes with deliveries left to claim


class Kind(Enum):
    INGEST = 1
    CLAIM = 2
    RECORD = 3
    CALL = 4  # a store operation's own statements (relay.store.sqlite), run in the batch
    REJECT = 5  # nobody awaits it: the 401 does not wait for the record
    PROBE = 6  # writes nothing: proves that a transaction can begin and commit


@dataclass(slots=True, eq=False)
class Op:
    kind: Kind
    payload: Any
    future: asyncio.Future[Any] | None
    result: Any = field(default=None)


_STOP = object()
_URGENT = frozenset({Kind.INGEST, Kind.CLAIM, Kind.CALL, Kind.PROBE})  # someone waits
MIN_COMMIT_GAP = 0.001  # seconds between two commits (at most 1,000 commits a second)
LAZY_WAIT = 0.005  # how long an outcome or rejection may wait for company
MAX_QUEUED_REJECTIONS = 1000
HEALTH_HOLD = 2.0  # seconds the writer reports unhealthy after a storage fault
STALLED = 1.0  # a transaction open this long means commits are not completing
PROBE_AGAIN = 0.5  # while the database is locked, how often the writer tries an empty commit


class Batcher:
    """A store's single writer, whatever the database: a queue of operations that share
    transactions (see the module docstring). A backend subclass runs the batch
    (``_transaction``) and says which errors are faults of the database as a whole."""

    def __init__(
        self,
        max_batch: int,
        on_commit: Callable[[list[NewEvent], set[str]], None],
        keep_rejections: int = 10_000,
    ) -> None:
        self._keep_rejections = keep_rejections
        self._rejections_queued = 0
        self.rejections_dropped = 0
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: asyncio.Queue[Op | object] = asyncio.Queue()
        self.last_error: str | None = None
        self._failed_at: float | None = None
        self._locked = False  # the last fault was a lock held by another process
        self._busy_since: float | None = None  # a transaction is on the writer's thread
        self._probe: asyncio.Future[Any] | None = None
        self._fault = Fault(log, "store.write")
        self._urgent = asyncio.Event()  # an op someone is waiting on was queued
        self.hand_off: HandOff | None = None
        self._committed_at = 0.0
        self._trimmed_hour = 0  # the hour (of the rollup's minutes) whose trim is done

    @property
    def healthy(self) -> bool:
        """Whether commits complete. Not while a transaction has been open for ``STALLED``
        seconds (another process holds the write lock and busy_timeout has not run out
        yet), nor after a lock until a commit went through, nor for ``HEALTH_HOLD`` seconds
        after any other fault: a disk that fails now and then (full, with room for small
        writes only) must not flap between ready and not ready."""
        now = time.monotonic()
        if self._busy_since is not None and now - self._busy_since > STALLED:
            return False
        if self._failed_at is None:
            return True
        return not self._locked and now - self._failed_at > HEALTH_HOLD

    @property
    def problem(self) -> str | None:
        """Why commits do not complete; None when they do."""
        if self._busy_since is not None and time.monotonic() - self._busy_since > STALLED:
            waited = time.monotonic() - self._busy_since
            return (
                f"a commit has waited {waited:.1f}s for the database (is another process "
                "holding a write lock?)"
            )
        return None if self.healthy else self.last_error

    async def check(self, wait: float) -> str | None:
        """Commit an empty transaction (sharing the next batch, if one is coming) and wait
        up to ``wait`` seconds for it: None if it committed, else why not. What /readyz asks:
        without traffic nothing else would find out that the database is locked."""
        if not self.healthy:
            self._start_probe()
            return self.problem
        probe = self._start_probe()
        await asyncio.wait({probe}, timeout=wait)
        if not probe.done():
            return self.problem or f"a commit has not completed within {wait:g}s"
        return self.problem

    def _start_probe(self) -> asyncio.Future[Any]:
        """The probe in flight, or a new one. Its outcome is only read through health."""
        if self._probe is None or self._probe.done():
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._queue.put_nowait(Op(Kind.PROBE, None, future))
            self._urgent.set()
            self._probe = future
        return self._probe

    # -- the public operations -------------------------------------------------------------

    async def ingest(self, event: NewEvent) -> Stored:
        result: Stored = await self._submit(Kind.INGEST, event)
        return result

    async def claim(
        self, destination: str, now: float, limit: int, lease: float, limits: Limits | None = None
    ) -> list[Claim]:
        params = {
            "destination": destination,
            "now": now,
            "limit": limit,
            "lease_until": now + lease,
            "limits": limits,
        }
        result: list[Claim] = await self._submit(Kind.CLAIM, params)
        return result

    async def record(self, record: AttemptRecord) -> None:
        await self._submit(Kind.RECORD, record)

    async def call(self, work: Callable[[Any], T]) -> T:
        """Run ``work`` on the writer's connection inside the next transaction (shared with
        whatever else is queued) and return its result once that transaction committed.
        Only the store's own operations use this; each brings fixed statements."""
        result: T = await self._submit(Kind.CALL, work)
        return result

    def note_rejection(self, rejection: Rejection) -> None:
        """Record a refused request in a coming transaction, without waiting for it. A flood
        of bad requests must not grow memory: beyond a bound, records are dropped."""
        if self._keep_rejections == 0 or self._rejections_queued >= MAX_QUEUED_REJECTIONS:
            self.rejections_dropped += 1
            return
        self._rejections_queued += 1
        self._queue.put_nowait(Op(Kind.REJECT, rejection, None))

    async def _submit(self, kind: Kind, payload: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Op(kind, payload, future))
        if kind is not Kind.RECORD:
            self._urgent.set()
        return await future

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Drain the queue until stop(); every batch is one transaction."""
        while True:
            first = await self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, Op)
            batch = [first]
            stop = await self._gather(batch)
            await self._commit(batch)
            self._committed_at = time.monotonic()
            if stop:
                return

    async def _gather(self, batch: list[Op]) -> bool:
        """Fill a batch; True when stop() was reached.

        A commit costs about 80 µs of CPU (mostly the fsync) whatever it carries, and on a
        busy relay tiny commits would take a large share of the core. So commits are paced:
        at most one per ``MIN_COMMIT_GAP``, which at low rates adds nothing (the last commit
        is long past) and under load lets each commit carry more. Attempt outcomes and
        rejections nobody waits for (no acknowledgement hangs on them) wait up to
        ``LAZY_WAIT`` for a commit they can share rather than paying for their own.
        """
        stop = self._take(batch)
        if stop or len(batch) >= self._max_batch:
            return stop  # full (with max_batch = 1, always: nothing to wait for)
        if not any(op.kind in _URGENT for op in batch):
            self._urgent.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LAZY_WAIT):
                    await self._urgent.wait()
            stop = self._take(batch)
        wait = self._committed_at + MIN_COMMIT_GAP - time.monotonic()
        if wait > 0 and not stop and len(batch) < self._max_batch:
            await asyncio.sleep(wait)
            stop = self._take(batch)
        return stop

    def _take(self, batch: list[Op]) -> bool:
        """Move queued ops into the batch (up to its limit); True on reaching stop()."""
        while len(batch) < self._max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _STOP:
                return True
            assert isinstance(item, Op)
            batch.append(item)
        return False

    def stop(self) -> None:
        """Ask run() to return once everything queued before this call is committed."""
        self._queue.put_nowait(_STOP)
        self._urgent.set()

    async def _commit(self, batch: list[Op]) -> None:
        self._rejections_queued -= sum(1 for op in batch if op.kind is Kind.REJECT)
        # An idle lane (nothing due, free slots) takes the new deliveries of this batch
        # as they are stored: they are inserted already leased to it, which saves a claim
        # (a writer operation, a commit share and a wake-up) per event at moderate rates.
        offers = self._offer(batch)
        self._busy_since = time.monotonic()
        try:
            inserted = await self._transaction(batch, offers)
        except Exception as exc:
            self._busy_since = None
            self._hand_over({}, [])  # frees the slots
            if len(batch) > 1 and not self._is_storage_fault(exc):
                # One bad op must not fail the others: retry each in a transaction of its own.
                for op in batch:
                    await self._commit([op])
                return
            self._fail(batch, exc)
            return
        self._busy_since = None
        if self._failed_at is not None and (
            self._locked or any(op.kind is not Kind.PROBE for op in batch)
        ):
            # An empty commit proves a lock is gone, but not that a full disk has room.
            self._failed_at, self._locked = None, False
        if self._fault.since is not None:
            self._fault.cleared(time.monotonic())
        for op in batch:
            if op.future is not None and not op.future.done():
                op.future.set_result(op.result)
        self._hand_over(inserted.leased, inserted.events)
        self._on_commit(inserted.events, inserted.woken)

    def _offer(self, batch: list[Op]) -> dict[str, tuple[int, float]]:
        if self.hand_off is None:
            return {}
        wanted: dict[str, int] = {}
        for op in batch:
            if op.kind is Kind.INGEST:
                for event in flatten([op.payload]):
                    for name in event.destinations:
                        wanted[name] = wanted.get(name, 0) + 1
        return self.hand_off.offer(wanted) if wanted else {}

    def _hand_over(self, leased: dict[str, list[Claim]], stored: list[NewEvent]) -> None:
        if self.hand_off is None:
            return
        handed = {claim.event_id for claims in leased.values() for claim in claims}
        payloads = {e.id: EventPayload.of(e) for e in stored if e.id in handed}
        self.hand_off.take(leased, payloads)

    def _fail(self, batch: list[Op], exc: Exception) -> None:
        if self._is_storage_fault(exc):
            now = time.monotonic()
            self._failed_at, self._locked = now, self._is_lock(exc)
            self.last_error = brief(f"{type(exc).__name__}: {exc}")
            self._fault.failed(self.last_error, now)
            if self._locked:
                # Nothing else may come to find out when the lock is gone: try again soon.
                asyncio.get_running_loop().call_later(PROBE_AGAIN, self._start_probe)
            error: Exception = StorageUnavailable(str(exc))
        else:
            log.exception("store.op_failed", exc_info=exc)
            error = exc
        for op in batch:
            if op.future is not None and not op.future.done():
                op.future.set_exception(error)

    def tally(
        self,
        stored: list[NewEvent],
        finished: list[tuple[str, str, float, float]],
        rejections: list[Rejection],
    ) -> tuple[list[tuple[int, str, str, str, int]], int | None]:
        """The rollup rows a transaction adds (events stored, outcomes applied as
        (destination, state, queued at, finished at), requests refused), and once an hour
        the minute before which the rollup is trimmed."""
        t = rollup.Tally()
        for event in stored:
            if not event.items:  # a split batch counts as its items
                t.received(event.source, event.received_at, event.destinations)
        for destination, state, queued_at, at in finished:
            t.finished(destination, state, queued_at, at)
        for r in rejections:
            t.rejected(r.source, r.at)
        rows = t.rows()
        trim = None
        latest = max((row[0] for row in rows), default=None)  # the times it counts, not ours
        if latest is not None and latest // 60 > self._trimmed_hour:
            self._trimmed_hour = latest // 60
            trim = latest - rollup.KEEP_MINUTES
        return rows, trim

    # -- what a backend provides ---------------------------------------------------------

    async def _transaction(self, batch: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
        """Apply the batch in one transaction and commit it; raise (rolled back) on error."""
        raise NotImplementedError

    def _is_storage_fault(self, exc: BaseException) -> bool:
        """A fault of the database as a whole (disk, connection, lock), not of one op."""
        raise NotImplementedError

    def _is_lock(self, exc: BaseException) -> bool:
        """A lock held by another process: the fault ends as soon as a commit goes through."""
        return False


# Rows and parameters of the named statements, the same for every backend.


def event_row(e: NewEvent) -> tuple[Any, ...]:
    f = e.facts
    tracked = f is not None and f.subject is not None and f.rank is not None
    return (
        e.id,
        e.source,
        e.received_at,
        e.idempotency_key,
        e.event_type,
        e.content_type,
        e.remote_addr,
        e.headers,
        e.body,
        e.occurred_at,
        f.parent_id if f else None,
        f.provider if f else None,
        f.channel if f else None,
        f.provider_type if f else None,
        f.subject if f else None,
        f.contact if f else None,
        f.conversation if f else None,
        0 if tracked else None,  # stale: 1 once the store finds it would move a status back
        e.origin,
    )


def flatten(events: list[NewEvent]) -> list[NewEvent]:
    """Each event followed by its items (a split batch), in the order they came."""
    rows: list[NewEvent] = []
    for event in events:
        rows.append(event)
        rows.extend(event.items)
    return rows


def forgotten(events: list[NewEvent], inserted: set[str]) -> list[str]:
    """The requests of split batches whose every item was a duplicate: not kept, so a
    repeat of a whole batch creates nothing."""
    return [e.id for e in events if e.items and not any(i.id in inserted for i in e.items)]


def tracked(event: NewEvent) -> tuple[str, str, int] | None:
    """(provider, subject, rank) when the event may move its subject's status."""
    f = event.facts
    if f is None or f.subject is None or f.rank is None:
        return None
    return (f.provider or event.source, f.subject, f.rank)


def decide_statuses(
    tracked: list[tuple[NewEvent, tuple[str, str, int]]], current: dict[tuple[str, str], int]
) -> tuple[list[dict[str, Any]], list[tuple[str]]]:
    """Each message's status moved by the batch's events, in the order they came
    (``relay.normalize.taxonomy.transition``): the rows to write, and the stale events (each
    marked ``stale``). ``current`` holds the ranks stored before the batch."""
    moved: dict[tuple[str, str], dict[str, Any]] = {}
    stale: list[tuple[str]] = []
    for event, (provider, subject, rank) in tracked:
        key = (provider, subject)
        verdict = transition(current.get(key), rank)
        if verdict.moves:
            current[key] = rank
            moved[key] = status_params(event, provider, subject, rank)
        if verdict.stale:
            event.stale = True
            stale.append((event.id,))
    return list(moved.values()), stale


def status_params(event: NewEvent, provider: str, subject: str, rank: int) -> dict[str, Any]:
    return {
        "provider": provider,
        "subject": subject,
        "status": event.event_type,
        "rank": rank,
        "event_id": event.id,
        "occurred_at": event.occurred_at,
        "now": event.received_at,
    }


def delivery_rows(event: NewEvent) -> list[tuple[str, str, float, float, float, str | None]]:
    """The event's deliveries; none to a ``stale = "drop"`` destination when it is stale."""
    now = event.received_at
    keys = event.ordering_keys or (None,) * len(event.destinations)
    drop = event.drop_stale if event.stale and event.drop_stale else (False,) * len(keys)
    return [
        (event.id, d, now, now, now, k)
        for d, k, dropped in zip(event.destinations, keys, drop, strict=True)
        if not dropped
    ]


def stored_result(event: NewEvent, inserted: set[str], original: str | None) -> Stored:
    """What ingest answers for one request: its event, or (a duplicate) the original's."""
    new_items = sum(1 for i in event.items if i.id in inserted)
    if event.id in inserted:
        return Stored(event.id, False, len(event.items), new_items)
    assert original is not None
    return Stored(original, True, len(event.items), 0)


def rejection_row(r: Rejection) -> tuple[Any, ...]:
    return (r.at, r.source, r.status, r.reason, r.remote_addr, r.method, r.headers)


def attempt_row(r: AttemptRecord) -> dict[str, Any]:
    return {
        "id": r.delivery_id,
        "number": r.number,
        "started_at": r.started_at,
        "duration_ms": r.duration_ms,
        "status": r.status,
        "error": r.error,
        "excerpt": r.response_excerpt,
        "headers": r.response_headers,
        "outcome": r.outcome,
        "lease": r.lease,
        "strict": r.strict,
        "now": r.finished_at,
    }


def finish_params(r: AttemptRecord) -> dict[str, Any]:
    return {
        "id": r.delivery_id,
        "state": r.state,
        "next_attempt_at": r.next_attempt_at,
        "now": r.finished_at,
        "status": r.status,
        "error": r.error,
        "lease": r.lease,
        "strict": r.strict,
    }


BEATS_KEPT = 40 * 86400.0  # seconds a relay's last beat is kept: longer than any provider's log


def window_row(window: Window, now: float) -> dict[str, Any]:
    return {
        "source": window.source,
        "since": window.since,
        "until": window.until,
        "reason": window.reason,
        "now": now,
    }


def window_of(row: Any) -> Window:
    """A row of the ``catch_ups_open`` query."""
    id_, source, since, until, reason, tries, _created, error = row
    return Window(source, float(since), float(until), reason, int(id_), int(tries), error)


def closed_row(
    window_id: int, state: str, tally: Tally, error: str | None, now: float
) -> dict[str, Any]:
    return {
        "id": window_id,
        "state": state,
        "now": now,
        "fetched": tally.fetched,
        "new": tally.new,
        "known": tally.known,
        "requested": tally.requested,
        "error": error,
    }
