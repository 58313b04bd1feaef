"""The PostgreSQL database: the driver, connections, and the migrations.

psycopg 3 is an optional dependency (``pip install 'webhook-relay[postgresql]'``, or from a
clone ``pip install '.[postgresql]'``); SQLite users
never import it. Every connection is set up the same way: autocommit (relay opens its own
transactions), ``synchronous_commit = on`` (a 2xx only after the commit is on disk), and an
``application_name`` that says which relay it is in ``pg_stat_activity``.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from relay import sql
from relay.configtypes import shown_url
from relay.errors import StorageError
from relay.pgdriver import driver

log = logging.getLogger("relay.store")

MIGRATE_LOCK = "relay.migrate"
CONNECT_TIMEOUT = 10  # seconds


def instance_name() -> str:
    return f"relay@{socket.gethostname()}:{os.getpid()}"


def _kwargs() -> dict[str, Any]:
    return {
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": instance_name()[:63],
    }


def connect_failure(url: str, exc: Exception) -> StorageError:
    return StorageError(
        f"storage.url {shown_url(url)}: cannot connect to PostgreSQL ({str(exc).strip()}); "
        "check that the server runs and the URL's host, port, user, password and database "
        "are right (the database must exist: createdb NAME)"
    )


async def connect_async(url: str) -> Any:
    psycopg = driver()
    try:
        conn = await psycopg.AsyncConnection.connect(url, **_kwargs())
    except psycopg.Error as exc:
        raise connect_failure(url, exc) from None
    try:
        await conn.execute("SET synchronous_commit = on")
    except BaseException:
        # Cancelled (a store closing while its listener connects) or failed: the caller
        # never receives this connection, so close it here rather than leak it open.
        await conn.close()
        raise
    return conn


def known_good(conn: Any) -> bool:
    """Idle, outside any transaction or pipeline: safe to use again. psycopg can leave a
    connection in an aborted pipeline after the server went away, neither closed nor
    broken, on which every later query fails; such a connection is closed, never reused."""
    pq = driver().pq
    return bool(
        not conn.closed
        and not conn.broken
        and conn.info.transaction_status == pq.TransactionStatus.IDLE
        and conn.pgconn.pipeline_status == pq.PipelineStatus.OFF
    )


def connect(url: str, read_only: bool = False) -> Any:
    psycopg = driver()
    try:
        conn = psycopg.Connection.connect(url, **_kwargs())
    except psycopg.Error as exc:
        raise connect_failure(url, exc) from None
    if read_only:
        conn.execute("SET default_transaction_read_only = on")
    return conn


async def migrate(conn: Any, url: str) -> int:
    """Apply every migration newer than the database's, each in its own transaction, under
    an advisory lock: several relays starting at once migrate once (the others wait, then
    find nothing to do). Returns the schema version."""
    await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (MIGRATE_LOCK,))
    try:
        known = sql.migrations("postgresql")
        latest = known[-1][0] if known else 0
        cur = await conn.execute("SELECT to_regclass('relay_migrations') IS NOT NULL")
        row = await cur.fetchone()
        current = 0
        if row and row[0]:
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM relay_migrations")
            found = await cur.fetchone()
            current = int(found[0]) if found else 0
        if current > latest:
            raise StorageError(
                f"storage.url {shown_url(url)}: schema version {current} is newer than this relay "
                f"knows ({latest}); run a newer relay or restore a backup taken before the "
                "upgrade"
            )
        for number, name, script in known:
            if number <= current:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(script)
                    await conn.execute(
                        "INSERT INTO relay_migrations (version, name) VALUES (%s, %s)",
                        (number, name),
                    )
            except driver().Error as exc:
                raise StorageError(
                    f"storage.url {shown_url(url)}: migration {name} failed: {exc}"
                ) from None
            log.info("store.migrated", extra={"fields": {"migration": name}})
        return latest
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (MIGRATE_LOCK,))
