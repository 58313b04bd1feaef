"""A lane on its own (relay.scheduler.lane.Lane): on the store in memory and on a SQLite
file, a real receiver on 127.0.0.1, no app, no scheduler. The lane is driven by hand
(``notify``, the clock) and each test waits on what the lane did (``looks``: a decision
that ended in a sleep), never on time passing.

Its decisions are table-tested in test_plan.py; these check that the lane carries them out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.records import NewEvent
from relay.scheduler.lane import Lane
from relay.sections import DestinationConfig, StorageConfig
from relay.store import Store
from tests.helpers import Receiver, SteppedClock, settings_for, wait_for
from tests.store.conftest import opening

N = 0


def destination(receiver: Receiver, **changes: Any) -> DestinationConfig:
    settings = settings_for(Path("unused.db"), receiver.url, destination=changes)
    return settings.destinations[0]


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The store in memory (tests/store/memory.py), and SQLite beside it."""
    config = StorageConfig(path=tmp_path / "relay.db")
    opened = await opening(str(request.param), config)
    opened.start()
    try:
        yield opened
    finally:
        await opened.close()


async def ingest(store: Store, clock: SteppedClock, count: int = 1) -> list[str]:
    global N
    ids = []
    for _ in range(count):
        N += 1
        event = NewEvent(
            id=f"evt_lane{N:08d}",
            source="demo",
            received_at=clock.time(),
            idempotency_key=None,
            event_type="t",
            content_type="application/json",
            remote_addr="127.0.0.1",
            headers=json.dumps([["Content-Type", "application/json"]]),
            body=b'{"n": %d}' % N,
            destinations=("app",),
        )
        await store.ingest(event)
        ids.append(event.id)
    return ids


class Running:
    """A lane's run() as a task, stopped at the end of the test."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.task = asyncio.create_task(lane.run())

    async def look(self) -> None:
        """Wake the lane and wait until it has looked at its queue and gone back to sleep."""
        before = self.lane.looks
        self.lane.notify()
        await wait_for(lambda: self.lane.looks > before)

    async def stop(self) -> None:
        self.lane.request_stop()
        await asyncio.wait_for(self.task, 10)
        await self.lane.drain(1.0)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


async def test_a_lane_delivers_what_is_due_and_records_it(store: Store, receiver: Receiver) -> None:
    clock = SteppedClock()
    run = Running(Lane(destination(receiver), store, clock=clock))
    try:
        ids = await ingest(store, clock, 3)
        run.lane.notify()
        await wait_for(lambda: len(receiver.received) == 3)
        await wait_for(lambda: run.lane.in_flight == 0)
        assert sorted(receiver.event_ids()) == ids
        assert await store.pending_count("app") == 0
    finally:
        await run.stop()


async def test_a_retry_goes_when_it_is_due_and_not_before(store: Store, receiver: Receiver) -> None:
    receiver.script = [503]
    clock = SteppedClock()
    lane = Lane(destination(receiver, retry={"schedule": [60.0]}), store, clock=clock)
    run = Running(lane)
    try:
        await ingest(store, clock)
        run.lane.notify()
        await wait_for(lambda: len(receiver.received) == 1)
        await wait_for(lambda: run.lane.in_flight == 0)
        await run.look()  # due in 60 s: the lane looks and sleeps
        assert len(receiver.received) == 1
        clock.advance(61)
        run.lane.notify()
        await wait_for(lambda: len(receiver.received) == 2)
    finally:
        await run.stop()


async def test_a_paused_lane_sends_nothing_until_resumed(store: Store, receiver: Receiver) -> None:
    clock = SteppedClock()
    run = Running(Lane(destination(receiver), store, clock=clock))
    try:
        await run.look()  # idle: nothing queued
        await run.lane.pause("testing")
        assert run.lane.offer(5) == 0  # it takes no deliveries from the commit
        await ingest(store, clock, 2)
        await run.look()
        assert receiver.received == []
        assert run.lane.waiting() == "the destination is paused"
        await run.lane.resume()
        await wait_for(lambda: len(receiver.received) == 2)
    finally:
        await run.stop()


async def test_the_rate_limit_paces_the_lane(store: Store, receiver: Receiver) -> None:
    """5 a second, burst 1: the lane sleeps to each next token and wakes by itself."""
    clock = SteppedClock()
    limited = destination(receiver, rate_limit={"rate": 5.0, "burst": 1})
    run = Running(Lane(limited, store, clock=clock))
    try:
        await ingest(store, clock, 3)
        run.lane.notify()
        await wait_for(lambda: len(receiver.received) == 3)
        arrived = [r.at for r in receiver.received]
        assert arrived[2] - arrived[0] >= 0.35  # two tokens apart (0.4 s), never faster
    finally:
        await run.stop()


async def test_a_lane_held_by_its_rate_limit_says_so(store: Store, receiver: Receiver) -> None:
    clock = SteppedClock()
    limited = destination(receiver, rate_limit={"rate": 0.01, "burst": 1})
    run = Running(Lane(limited, store, clock=clock))
    try:
        await ingest(store, clock, 2)
        run.lane.notify()
        await wait_for(lambda: len(receiver.received) == 1)
        await run.look()  # no token left: it sleeps to the next one
        assert len(receiver.received) == 1
        assert (run.lane.waiting() or "").startswith("its rate limit holds it back")
        clock.advance(100.0)
        run.lane.notify()
        await wait_for(lambda: len(receiver.received) == 2)
    finally:
        await run.stop()


async def test_an_idle_plain_lane_takes_deliveries_from_the_commit(
    store: Store, receiver: Receiver
) -> None:
    clock = SteppedClock()
    lane = Lane(destination(receiver, max_concurrency=4), store, clock=clock)
    run = Running(lane)
    try:
        await run.look()  # nothing due: it knows its queue is empty
        assert lane.offer(10) == 4  # its free slots
        lane.take(4, [], {})  # the commit handed nothing over after all: slots back
        assert lane.offer(1) == 1
        lane.take(1, [], {})
        ordered = Lane(destination(receiver, ordering="source"), store, clock=clock)
        assert ordered.offer(1) == 0  # an ordered lane claims in order, never takes
    finally:
        await run.stop()


async def test_the_circuit_opens_and_the_lane_stops_sending(
    store: Store, receiver: Receiver
) -> None:
    receiver.default = 500
    clock = SteppedClock()
    breaker = {"failures": 2, "cooldown": 300.0}
    lane = Lane(
        destination(receiver, circuit=breaker, retry={"schedule": [0.0] * 9}), store, clock=clock
    )
    run = Running(lane)
    try:
        await ingest(store, clock, 5)
        run.lane.notify()
        await wait_for(lambda: lane.circuit is not None and lane.circuit.state == "open")
        await wait_for(lambda: run.lane.in_flight == 0)
        sent = len(receiver.received)
        await run.look()
        assert len(receiver.received) == sent  # open: deliveries wait, spending nothing
        assert (lane.waiting() or "").startswith("its circuit is open")
        receiver.default = 200
        clock.advance(301)  # the cooldown has passed: a probe goes, and closes it
        run.lane.notify()
        await wait_for(lambda: lane.circuit is not None and lane.circuit.state == "closed")
    finally:
        await run.stop()


async def test_a_lane_wakes_by_itself_for_a_retry(store: Store, receiver: Receiver) -> None:
    """Nothing notifies it: the outcome it recorded set its timer."""
    receiver.script = [503]
    clock = SteppedClock()
    lane = Lane(destination(receiver, retry={"schedule": [0.2]}), store, clock=clock)
    run = Running(lane)
    try:
        await ingest(store, clock)
        run.lane.notify()
        await wait_for(lambda: len(receiver.received) == 2)
    finally:
        await run.stop()
