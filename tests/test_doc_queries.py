"""The SQL in docs/schema.md runs as written: the SQLite queries on a SQLite database relay
made, and the PostgreSQL ones (its "On PostgreSQL" section) with psql's driver."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg

from relay.sections import StorageConfig
from relay.store import open_store
from tests.store.test_contract import event

DOC = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)


def blocks() -> tuple[list[str], list[str]]:
    text = DOC.read_text()
    lite, _, pg = text.partition("## On PostgreSQL")
    return BLOCK.findall(lite), BLOCK.findall(pg)


async def _fill(config: StorageConfig) -> None:
    store = await open_store(config)
    store.start()
    try:
        for n in range(3):
            await store.ingest(event(n))
    finally:
        await store.close()


async def test_sqlite_queries_run(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    await _fill(StorageConfig(path=db))
    lite, _ = blocks()
    assert len(lite) >= 6
    with sqlite3.connect(db) as conn:
        for block in lite:
            for statement in filter(str.strip, block.split(";")):
                conn.execute(statement).fetchall()


async def test_postgresql_queries_run(pg_url: str) -> None:
    await _fill(StorageConfig.model_validate({"url": pg_url}))
    _, pg = blocks()
    assert len(pg) >= 6
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for block in pg:
            for statement in filter(str.strip, block.split(";")):
                conn.execute(statement).fetchall()


async def test_message_history_queries_in_events_md_run(tmp_path: Path) -> None:
    """docs/events.md's "Querying message history", on a database with a status in it."""
    from tests.store.test_contract import status

    db = tmp_path / "relay.db"
    store = await open_store(StorageConfig(path=db))
    store.start()
    try:
        await store.ingest(status(1, 40, "message.read"))
    finally:
        await store.close()
    text = (DOC.parent / "events.md").read_text()
    section = text.split("## Querying message history", 1)[1].split("\n## ", 1)[0]
    found = BLOCK.findall(section)
    assert found
    with sqlite3.connect(db) as conn:
        for block in found:
            for statement in filter(str.strip, block.split(";")):
                if statement.strip().startswith("--") and "\n" not in statement.strip():
                    continue
                conn.execute(statement).fetchall()
        assert conn.execute("SELECT status FROM statuses WHERE subject = 'm-1'").fetchall() == [
            ("message.read",)
        ]
