"""``relay migrate-db``: an existing SQLite database's history, copied into PostgreSQL.

Everything is copied (events with their bodies, deliveries, attempts, rejections, pauses,
the audit trail), with the same ids, in one transaction: the target either gets all of it
or nothing. The SQLite file must not be in use (its lock file says so) and the target must
hold no events yet. Leases are not copied: no attempt is in flight once relay stopped, so
pending deliveries are simply due again on the new database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from relay.configtypes import shown_url
from relay.errors import StorageError
from relay.pgdriver import driver
from relay.store.postgresql.database import connect, connect_async, migrate
from relay.store.sqlite.files import lock_database
from relay.store.sqlite.files import migrate as migrate_sqlite

# (table, columns, SQLite's SELECT): in an order the foreign keys accept.
TABLES: list[tuple[str, str, str]] = [
    (
        "events",
        "id, source, received_at, idempotency_key, event_type, content_type, remote_addr, "
        "headers, body, occurred_at, redacted_at, parent_id, provider, channel, provider_type, "
        "subject, contact, conversation, stale, origin",
        "ORDER BY rowid",  # seq follows the order they were committed
    ),
    (
        "statuses",
        "provider, subject, status, rank, event_id, occurred_at, updated_at",
        "",
    ),
    (
        "deliveries",
        "id, event_id, destination, state, attempts, next_attempt_at, created_at, updated_at, "
        "delivered_at, last_status, last_error, ordering_key, replay_of, lease_seq",
        "ORDER BY id",
    ),
    (
        "attempts",
        "id, delivery_id, number, started_at, duration_ms, status, error, response_excerpt, "
        "outcome, response_headers",
        "ORDER BY id",
    ),
    ("rejections", "id, at, source, status, reason, remote_addr, method, headers", "ORDER BY id"),
    ("destination_state", "destination, paused, paused_at, reason, updated_at", ""),
    ("audit", "id, at, actor, origin, action, target, params, result, request_id", "ORDER BY id"),
    ("minutes", "minute, kind, name, metric, n", ""),
    # The last beat says since when nothing was received: the new relay catches that up.
    ("heartbeats", "node, started, beat", ""),
    (
        "catch_ups",
        "id, source, since, until, reason, state, created_at, finished_at, tries, fetched, "
        "new, known, requested, error",
        "ORDER BY id",
    ),
    (
        "incidents",
        "id, subject, kind, status, since, last_failure, resolved_at, failures, dominant, "
        "counts, samples, left_to_replay",
        "ORDER BY id",
    ),
]
SEQUENCES = ("deliveries", "attempts", "rejections", "audit", "catch_ups", "incidents")
# Columns deliberately not copied, and why (tests/test_migrate_db.py checks the rest).
LEFT_OUT = {"deliveries": {"lease_until"}}  # no attempt is in flight once relay stopped


def copy_sqlite(source: Path, url: str, actor: str) -> dict[str, int]:
    """Copy ``source`` into the database at ``url``; the rows copied, by table."""
    if not source.exists():
        raise StorageError(f"{source}: no such database file")
    lock = lock_database(source)  # refuses while a relay has it open
    try:
        with contextlib.closing(sqlite3.connect(source, isolation_level=None)) as lite:
            migrate_sqlite(lite, source)  # the newest schema, as relay would at start
            return _copy(lite, url, source, actor)
    finally:
        os.close(lock)


async def _prepare(url: str) -> None:
    conn = await connect_async(url)
    try:
        await migrate(conn, url)
    finally:
        await conn.close()


def _copy(lite: sqlite3.Connection, url: str, source: Path, actor: str) -> dict[str, int]:
    asyncio.run(_prepare(url))
    psycopg = driver()
    counts: dict[str, int] = {}
    with connect(url) as pg:
        if pg.execute("SELECT EXISTS (SELECT 1 FROM events)").fetchone()[0]:
            raise StorageError(
                f"storage.url {shown_url(url)}: the database already holds events; migrate "
                "into a new, empty database (createdb NAME)"
            )
        try:
            with pg.transaction(), pg.cursor() as cur:
                for table, columns, order in TABLES:
                    counts[table] = _copy_table(lite, cur, table, columns, order)
                for table in SEQUENCES:
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608
                        f" COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                    )
                cur.execute(
                    "INSERT INTO audit (at, actor, origin, action, target, params, result)"
                    " VALUES (%s, %s, 'local', 'migrate-db', %s, '{}', %s)",
                    (time.time(), actor, str(source), json.dumps(counts)),
                )
        except psycopg.Error as exc:
            raise StorageError(
                f"storage.url {shown_url(url)}: the copy failed and nothing was kept ({exc})"
            ) from None
    return counts


def _copy_table(lite: sqlite3.Connection, cur: Any, table: str, columns: str, order: str) -> int:
    rows = lite.execute(f"SELECT {columns} FROM {table} {order}")  # noqa: S608 - fixed names
    count = 0
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count
