"""The relay keeps its promises when the database misbehaves, and recovers by itself."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import aiohttp

from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for


async def _ready(client: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, object]]:
    async with client.get(f"http://127.0.0.1:{port}/readyz") as response:
        return response.status, await response.json()


async def test_locked_database_gives_503_then_recovers_without_restart(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, storage={"busy_timeout": 0.2})
    async with running(settings) as relay:
        status, _, _ = await post(client, relay.port, BODY_JSON)
        assert status == 200
        await wait_for(lambda: len(receiver.received) == 1)

        # Another process takes the write lock (an operator's long transaction, a backup).
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            refused = await post(client, relay.port, BODY_JSON)
            assert refused[0] == 503, refused
            assert refused[1].get("Retry-After") == "5"
            ready, detail = await _ready(client, relay.port)
            assert ready == 503
            assert "locked" in str(detail["problems"])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

        # No restart: the next request is stored and delivered, readiness returns.
        status, _, _ = await post(client, relay.port, BODY_JSON)
        assert status == 200
        await wait_for(lambda: len(receiver.received) == 2, timeout=10)

        async def is_ready() -> bool:
            return (await _ready(client, relay.port))[0] == 200

        await wait_for(is_ready, timeout=10)
    # The refused request was never stored: exactly the two acknowledged events exist.
    assert query(db, "SELECT count(*) FROM events") == [(2,)]


async def test_readyz_says_not_ready_for_as_long_as_another_process_holds_the_lock(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 14: with another process holding the write lock (longer than busy_timeout) and
    no traffic, /readyz answered 200 in 4 of 8 checks. Every check during the hold must say
    503, and 200 must come back within 2 s of the release."""
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, storage={"busy_timeout": 1.0})
    async with running(settings) as relay:
        assert (await _ready(client, relay.port))[0] == 200
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            answers = []
            for _ in range(10):  # about 3 s: three busy_timeouts
                answers.append(await _ready(client, relay.port))
                await asyncio.sleep(0.2)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        released = asyncio.get_running_loop().time()

        async def is_ready() -> bool:
            return (await _ready(client, relay.port))[0] == 200

        await wait_for(is_ready, timeout=5)
        back_after = asyncio.get_running_loop().time() - released
    assert [status for status, _ in answers] == [503] * 10, answers
    assert all("database" in str(detail["problems"]) for _, detail in answers)
    assert back_after < 2.0


async def test_scheduler_survives_a_locked_database(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Retries that fall due while the database is locked still happen once it is free."""
    # Retry-After pins the retry 1 s after the first attempt, inside the lock below (a
    # jittered backoff could retry before the lock is even taken).
    receiver.script = [(503, {"Retry-After": "1"})]
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, storage={"busy_timeout": 0.1})
    async with running(settings) as relay:
        assert (await post(client, relay.port, BODY_JSON))[0] == 200
        await wait_for(lambda: len(receiver.received) == 1)
        blocker = sqlite3.connect(db, isolation_level=None)
        with contextlib.closing(blocker):
            blocker.execute("BEGIN EXCLUSIVE")
            # The retry falls due (1 s) while the lock holds: its claim fails, and the lane
            # says so; nothing was sent meanwhile.
            await wait_for(lambda: not relay.scheduler.healthy, timeout=10)
            assert len(receiver.received) == 1
            blocker.execute("ROLLBACK")
        await wait_for(lambda: len(receiver.received) == 2, timeout=15)
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("delivered",)])


async def test_outcome_recorded_after_the_lock_clears_without_a_second_delivery(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """The receiver answered while the database was locked: the outcome waits in memory and
    is written when the lock clears; the event is not sent again when the lease expires."""
    db = tmp_path / "relay.db"
    receiver.default = "slow"
    settings = settings_for(db, receiver.url, storage={"busy_timeout": 0.1})
    async with running(settings) as relay:
        assert (await post(client, relay.port, BODY_JSON))[0] == 200
        await wait_for(lambda: receiver.inflight == 1)  # the attempt is under way
        blocker = sqlite3.connect(db, isolation_level=None)
        with contextlib.closing(blocker):
            blocker.execute("BEGIN EXCLUSIVE")
            await wait_for(lambda: len(receiver.received) == 1 and receiver.inflight == 0)
            await wait_for(lambda: not relay.store.healthy, timeout=10)  # its record is failing
            blocker.execute("ROLLBACK")
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("delivered",)])
    assert len(receiver.received) == 1
    assert query(db, "SELECT number, status FROM attempts") == [(1, 200)]
