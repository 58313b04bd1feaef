"""``relay migrate-db``: a SQLite relay's history moved into PostgreSQL, then served from
there (issue 18)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aiohttp
import psycopg

from relay.records import EventFilter
from relay.store import open_reader
from tests.helpers import Receiver, post, query, running, settings_for, wait_for
from tests.process import RelayProcess, run_cli
from tests.test_cluster import cluster_config


async def test_history_moves_to_postgresql_and_pending_work_goes_on(
    tmp_path: Path, pg_url: str, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    receiver.script = [200, 200, 400]  # two delivered, one dead (a 4xx is final)
    settings = settings_for(db, receiver.url)
    async with running(settings) as relay:
        for n in range(3):
            status, _, _ = await post(
                client, relay.port, json.dumps({"n": n}).encode(), key=f"k{n}"
            )
            assert status == 200
        await wait_for(lambda: len(receiver.received) == 3)
        await wait_for(
            lambda: query(db, "SELECT count(*) FROM deliveries WHERE state != 'pending'") == [(3,)]
        )
        await relay.scheduler.pause("app")
        for n in range(3, 5):  # these wait, paused, and must be delivered after the move
            await post(client, relay.port, json.dumps({"n": n}).encode(), key=f"k{n}")
    # The pause moves with the history (checked below), then is lifted there.

    moved = run_cli(
        "migrate-db", "--from", str(db), "--to", "env:TEST_PG_URL", env={"TEST_PG_URL": pg_url}
    )
    assert moved.returncode == 0, moved.stderr
    assert "5 events" in moved.stdout

    with open_reader(pg_url) as reader:
        events = reader.events(EventFilter())
        assert sorted(e["idempotency_key"] for e in events) == [f"k{n}" for n in range(5)]
        states = sorted(s for e in events for s in e["deliveries"].values())
        assert states == ["dead", "delivered", "delivered", "pending", "pending"]
        original = reader.event(events[-1]["id"])
        assert original is not None
        assert original["body"] == {"n": 0}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        actions = [row[0] for row in conn.execute("SELECT action FROM audit ORDER BY id")]
        assert actions == ["migrate-db"]
        paused = conn.execute("SELECT paused FROM destination_state").fetchall()
        assert paused == [(1,)]
        conn.execute("UPDATE destination_state SET paused = 0")

    # A second migrate into the same database is refused: it already holds events.
    again = run_cli("migrate-db", "--from", str(db), "--to", pg_url)
    assert again.returncode == 1
    assert "already holds events" in again.stderr

    receiver.received.clear()
    relay = RelayProcess(cluster_config(tmp_path / "pg.toml", pg_url, receiver.url))
    try:
        relay.start(timeout=20)
        await wait_for(lambda: len(receiver.received) == 2, timeout=20)
        status, _, answer = await post(client, relay.port, json.dumps({"n": 0}).encode(), key="k0")
        assert status == 200
        assert answer["duplicate"] is True  # the idempotency keys came along
        status, _, answer = await post(client, relay.port, b'{"n": 9}', key="k9")
        assert answer["duplicate"] is False
        await wait_for(lambda: len(receiver.received) == 3, timeout=20)
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    assert sorted(json.loads(r.body)["n"] for r in receiver.received) == [3, 4, 9]
    # The ids went on from where SQLite left them: the new delivery did not collide.
    with psycopg.connect(pg_url) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM deliveries ORDER BY id")]
    assert ids == list(range(1, 7))


def test_migrate_db_refuses_while_a_relay_holds_the_file(tmp_path: Path, pg_url: str) -> None:
    from relay.store.sqlite.files import lock_database

    db = tmp_path / "relay.db"
    db.touch()
    lock = lock_database(db)
    try:
        result = run_cli("migrate-db", "--from", str(db), "--to", pg_url)
    finally:
        os.close(lock)
    assert result.returncode == 1
    assert "in use by another relay" in result.stderr


def test_every_table_and_column_of_the_history_is_copied() -> None:
    """What ``migrate-db`` copies is every column of every table SQLite has: a column added
    by a later migration (normalized events' facts, statuses, ``origin``, catch-up) that
    the copy leaves out would be lost silently on the move."""
    import sqlite3

    from relay import sql
    from relay.store.postgresql.copy import LEFT_OUT, TABLES

    conn = sqlite3.connect(":memory:")
    conn.executescript(sql.read("schema.sql"))
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    tables = {
        n: {c[1] for c in conn.execute(f"PRAGMA table_info({n})")} - LEFT_OUT.get(n, set())
        for n in names
    }
    conn.close()
    copied = {table: {c.strip() for c in columns.split(",")} for table, columns, _ in TABLES}
    assert copied == tables
