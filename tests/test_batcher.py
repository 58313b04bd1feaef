"""The single writer's decisions (relay.store.batch.Batcher), on the store in memory
(tests/store/memory.py): what shares a transaction, who is answered when, what one bad
operation or a fault of the database does to the others, health, bounded rejections, stop.

The backends' transactions are tested by the contract suite (tests/store/), which the store
in memory passes too; here each decision of the Batcher is seen on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from relay.errors import StorageUnavailable
from relay.records import AttemptRecord, NewEvent, Rejection
from relay.store import batch as batch_module
from relay.store.batch import Inserted, Kind, Op
from tests.store.memory import MemoryBatcher, MemoryFault, MemoryLock, Tables


class Lock(MemoryLock):
    """A lock held by another process (sqlite's SQLITE_BUSY)."""


class Disk(MemoryFault):
    """A fault of the database as a whole (a full disk)."""


class ListBatcher(MemoryBatcher):
    """The Batcher of the store in memory (tests/store/memory.py), which also keeps the
    kinds of operations of each transaction begun and committed. ``fail(batch)`` may return
    an exception to raise instead."""

    def __init__(self, max_batch: int = 100, keep_rejections: int = 10_000) -> None:
        super().__init__(Tables(), max_batch, keep_rejections, self._committed)
        self.transactions: list[list[Kind]] = []  # committed, in order
        self.tried: list[list[Kind]] = []  # every transaction begun
        self.stored: list[str] = []  # event ids committed

    def _committed(self, events: list[NewEvent], woken: set[str]) -> None:
        self.stored += [e.id for e in events]

    async def _transaction(self, batch: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
        kinds = [op.kind for op in batch]
        self.tried.append(kinds)
        inserted = await super()._transaction(batch, offers)
        self.transactions.append(kinds)
        return inserted


def new_event(n: int) -> NewEvent:
    return NewEvent(
        id=f"evt_{n:06d}",
        source="s",
        received_at=1.0,
        idempotency_key=None,
        event_type=None,
        content_type="application/json",
        remote_addr="127.0.0.1",
        headers="[]",
        body=b"{}",
        destinations=("a",),
    )


def rejection(n: int) -> Rejection:
    return Rejection(
        at=1.0,
        source="s",
        status=401,
        reason=f"r{n}",
        remote_addr="127.0.0.1",
        method="POST",
        headers="[]",
    )


def outcome_of_nothing() -> AttemptRecord:
    """An attempt's outcome for a delivery that is not there: recorded as nothing."""
    return AttemptRecord(
        delivery_id=999,
        number=1,
        started_at=1.0,
        duration_ms=1.0,
        status=200,
        error=None,
        response_excerpt=None,
        state="delivered",
        next_attempt_at=1.0,
        finished_at=1.0,
        lease=1,
    )


async def running(b: ListBatcher) -> asyncio.Task[None]:
    return asyncio.create_task(b.run())


async def stopped(b: ListBatcher, task: asyncio.Task[None]) -> None:
    b.stop()
    await asyncio.wait_for(task, 10)


async def test_concurrent_ingests_share_transactions_and_each_is_answered_after_its_commit() -> (
    None
):
    b = ListBatcher()
    task = await running(b)
    answered_after_commit: list[bool] = []

    async def one(n: int) -> None:
        stored = await b.ingest(new_event(n))
        answered_after_commit.append(stored.event_id in b.stored)

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(50))), 10)
    await stopped(b, task)
    assert answered_after_commit == [True] * 50
    assert sorted(b.stored) == sorted(f"evt_{n:06d}" for n in range(50))
    assert len(b.transactions) < 50  # group commit: many requests, few commits
    assert sum(len(t) for t in b.transactions) == 50


async def test_max_batch_one_commits_each_alone() -> None:
    b = ListBatcher(max_batch=1)
    task = await running(b)
    await asyncio.wait_for(asyncio.gather(*(b.ingest(new_event(n)) for n in range(5))), 10)
    await stopped(b, task)
    assert b.transactions == [[Kind.INGEST]] * 5


async def test_an_outcome_nobody_waits_for_waits_for_company(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An attempt's outcome is not urgent: it waits (up to LAZY_WAIT, here long) for an
    operation someone awaits and shares its commit, instead of paying for its own."""
    monkeypatch.setattr(batch_module, "LAZY_WAIT", 30.0)
    b = ListBatcher()
    task = await running(b)
    record = asyncio.create_task(b.record(outcome_of_nothing()))
    await asyncio.wait_for(_until(lambda: b._queue.empty()), 10)  # the writer holds it
    assert b.tried == []  # not begun alone: LAZY_WAIT (30 s) has not run out
    await asyncio.wait_for(b.ingest(new_event(1)), 10)
    await asyncio.wait_for(record, 10)
    await stopped(b, task)
    assert b.transactions == [[Kind.RECORD, Kind.INGEST]]


async def test_one_bad_operation_fails_alone_and_the_others_commit() -> None:
    b = ListBatcher()
    task = await running(b)

    def bad(db: Any) -> str:
        raise ValueError("a bug in one operation")

    calls = [b.call(lambda db: "a"), b.call(bad), b.call(lambda db: "c")]
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
    await stopped(b, task)
    assert results[0] == "a"
    assert isinstance(results[1], ValueError)
    assert results[2] == "c"
    assert b.tried[0] == [Kind.CALL] * 3  # together first, then each on its own
    assert b.transactions == [[Kind.CALL], [Kind.CALL]]
    assert b.healthy  # a bad operation is not a fault of the database


async def test_a_fault_of_the_database_fails_the_whole_batch_at_once() -> None:
    b = ListBatcher()
    b.fail = lambda batch: Disk("disk full")
    task = await running(b)
    results = await asyncio.wait_for(
        asyncio.gather(*(b.ingest(new_event(n)) for n in range(3)), return_exceptions=True), 10
    )
    assert all(isinstance(r, StorageUnavailable) for r in results), results
    assert len(b.tried) == 1  # not retried op by op: one try per batch while it is down
    assert not b.healthy
    assert b.problem is not None
    assert "disk full" in b.problem
    b.fail = lambda batch: None
    await asyncio.wait_for(b.ingest(new_event(9)), 10)  # room again: a commit goes through
    await stopped(b, task)
    assert b.healthy
    assert b.stored == ["evt_000009"]


async def test_after_a_lock_an_empty_commit_proves_it_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_module, "PROBE_AGAIN", 0.01)
    b = ListBatcher()
    held = True
    b.fail = lambda batch: Lock("database is locked") if held else None
    task = await running(b)
    with pytest.raises(StorageUnavailable):
        await asyncio.wait_for(b.ingest(new_event(1)), 10)
    assert not b.healthy
    held = False
    # Nothing else is queued: the writer's own probe (an empty commit) finds the lock gone.
    await asyncio.wait_for(_until(lambda: b.healthy), 10)
    await stopped(b, task)
    assert [Kind.PROBE] in b.transactions
    assert b.stored == []


async def test_rejections_are_bounded_and_none_kept_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_module, "MAX_QUEUED_REJECTIONS", 10)
    b = ListBatcher()
    for n in range(25):  # a flood while the writer is not draining
        b.note_rejection(rejection(n))
    assert b.rejections_dropped == 15
    task = await running(b)
    await stopped(b, task)
    assert [r["reason"] for r in b.tables.rejections] == [f"r{n}" for n in range(10)]
    none = ListBatcher(keep_rejections=0)
    none.note_rejection(rejection(1))
    assert none.rejections_dropped == 1


async def test_stop_commits_everything_queued_before_it() -> None:
    b = ListBatcher(max_batch=2)
    pending = [asyncio.create_task(b.ingest(new_event(n))) for n in range(5)]
    await asyncio.sleep(0)  # the ingests are queued
    b.stop()
    await asyncio.wait_for(b.run(), 10)
    results = await asyncio.wait_for(asyncio.gather(*pending), 10)
    assert [r.event_id for r in results] == [f"evt_{n:06d}" for n in range(5)]
    assert [len(t) for t in b.transactions] == [2, 2, 1]


async def _until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (the caller bounds it with wait_for)."""
    while not condition():
        await asyncio.sleep(0.001)
