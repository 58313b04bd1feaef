"""What the PostgreSQL store adds to the contract, with two or three stores (relays) on one
real database: migrations run once, a stale outcome is ignored after a rescue, and a
destination's limits count every relay's claims."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import psycopg
import pytest

from relay.errors import ConfigError
from relay.records import AttemptRecord, Limits
from relay.sections import StorageConfig
from relay.store import Store, open_store
from relay.store.sqlite import migrate
from tests.store.test_contract import T0, event


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[Store]]:
    """Three stores on one database, as three relays would have."""
    async with AsyncExitStack() as stack:
        opened: list[Store] = []
        for _ in range(3):
            store = await open_store(StorageConfig.model_validate({"url": pg_url}))
            store.start()
            stack.push_async_callback(store.close)
            opened.append(store)
        yield opened


def rows(url: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(statement).fetchall())


async def test_relays_starting_at_once_migrate_once(pg_url: str) -> None:
    config = StorageConfig.model_validate({"url": pg_url})
    opened = await asyncio.gather(*(open_store(config) for _ in range(4)))
    try:
        applied = rows(pg_url, "SELECT version, count(*) FROM relay_migrations GROUP BY 1")
        assert applied
        assert all(count == 1 for _, count in applied)
    finally:
        for store in opened:
            await store.close()


async def test_same_tables_views_and_columns_as_sqlite(pg_url: str, tmp_path: Path) -> None:
    """The documented queries name the same tables, views and columns on both databases.
    PostgreSQL adds events.seq (relay tail's position) and the cluster's shared state in
    destination_state; nothing else differs."""
    store = await open_store(StorageConfig.model_validate({"url": pg_url}))
    await store.close()
    pg: dict[str, set[str]] = {}
    for table, column in rows(
        pg_url,
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public'",
    ):
        pg.setdefault(str(table), set()).add(str(column))
    lite: dict[str, set[str]] = {}
    with sqlite3.connect(tmp_path / "x.db") as db:
        migrate(db)
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            " AND name NOT LIKE 'sqlite_%'"
        ):
            lite[name] = {row[1] for row in db.execute(f"PRAGMA table_info('{name}')")}
    pg.pop("relay_migrations")  # PostgreSQL has no user_version
    assert set(pg) == set(lite)
    extra = {
        "events": {"seq"},
        "destination_state": {
            "tokens",
            "tokens_at",
            "circuit",
            "streak",
            "opened_at",
            "failing_since",
        },
    }
    for name, columns in lite.items():
        assert pg[name] - extra.get(name, set()) == columns, name


async def test_a_stale_outcome_after_a_rescue_changes_nothing(stores: list[Store]) -> None:
    """Relay A claims, hangs past its lease; relay B rescues the delivery and records a
    success; A's late failure arrives after: it is not written (fenced by lease_seq)."""
    a, b, _ = stores
    await a.ingest(event(1))
    [stale] = await a.claim("a", T0 + 10, 1, lease=5)
    assert await b.claim("a", T0 + 12, 1, lease=5) == []  # A's lease holds
    [fresh] = await b.claim("a", T0 + 16, 1, lease=5)  # expired: rescued
    assert fresh.id == stale.id
    assert fresh.lease == stale.lease + 1

    def outcome(claim: object, state: str, status: int) -> AttemptRecord:
        assert hasattr(claim, "id")
        return AttemptRecord(
            delivery_id=claim.id,  # type: ignore[attr-defined]
            number=claim.attempt,  # type: ignore[attr-defined]
            started_at=T0 + 17,
            duration_ms=5.0,
            status=status,
            error=None if status < 300 else "boom",
            response_excerpt=None,
            state=state,
            next_attempt_at=T0 + 60,
            finished_at=T0 + 17,
            lease=claim.lease,  # type: ignore[attr-defined]
        )

    await b.record(outcome(fresh, "delivered", 200))
    await a.record(outcome(stale, "pending", 500))
    event_ = await b.read(lambda r: r.event(event(1).id))
    assert event_ is not None
    [delivery] = event_["deliveries"]
    assert delivery["state"] == "delivered"
    assert [h["status"] for h in delivery["history"]] == [200]


async def test_max_concurrency_counts_every_relays_leases(stores: list[Store]) -> None:
    for n in range(10):
        await stores[0].ingest(event(n))
    limits = Limits(max_concurrency=3)
    got = await asyncio.gather(*(s.claim("a", T0 + 10, 3, lease=30, limits=limits) for s in stores))
    assert sum(len(claims) for claims in got) == 3
    held = [s.held("a") for s, claims in zip(stores, got, strict=True) if len(claims) < 3]
    assert held
    assert all(h is not None and h > T0 + 10 for h in held)
    # Once the leases expire, the slots count as free again (a crashed relay's too).
    more = await stores[1].claim("a", T0 + 41, 3, lease=30, limits=limits)
    assert len(more) == 3


async def test_the_token_bucket_is_shared(stores: list[Store]) -> None:
    for n in range(30):
        await stores[0].ingest(event(n))
    limits = Limits(max_concurrency=100, rate=2.0, burst=4)
    first = [await s.claim("a", T0 + 10, 10, lease=30, limits=limits) for s in stores]
    assert sum(map(len, first)) == 4  # the burst, for the three together
    # Two seconds later: four more tokens, whoever asks.
    later = [await s.claim("a", T0 + 12, 10, lease=30, limits=limits) for s in stores]
    assert sum(map(len, later)) == 4
    held = stores[2].held("a")
    assert held is not None
    assert held > T0 + 12


def test_path_and_url_together_is_a_config_error(tmp_path: Path) -> None:
    from relay.config import load_config

    config = tmp_path / "relay.toml"
    config.write_text(
        '[storage]\npath = "relay.db"\nurl = "postgresql://relay@/relay"\n'
        '[[sources]]\nname = "s"\nverify = "none"\n'
    )
    with pytest.raises(ConfigError, match=r"storage\.path and storage\.url both set"):
        load_config(config)
    config.write_text(
        '[storage]\nurl = "mysql://x@y/z"\n[[sources]]\nname = "s"\nverify = "none"\n'
    )
    with pytest.raises(ConfigError, match="not PostgreSQL"):
        load_config(config)


async def test_a_connection_cancelled_while_it_is_set_up_is_closed(pg_url: str) -> None:
    """A store closing while its listener connects cancels connect_async; the connection
    it had opened must be closed, not left to the garbage collector (CI failed on the
    ResourceWarning). The cancel lands at each point of the set-up in turn."""
    from relay.store.postgresql.database import connect_async

    unclosed: list[str] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unclosed.append(str(u.exc_value))
    try:
        cancelled = 0
        for delay_ms in range(40):
            task = asyncio.create_task(connect_async(pg_url))
            await asyncio.sleep(delay_ms / 1000)
            task.cancel()
            try:
                conn = await task
            except asyncio.CancelledError:
                cancelled += 1
            else:
                await conn.close()
            gc.collect()
    finally:
        sys.unraisablehook = hook
    assert cancelled > 0
    assert unclosed == []
