"""The storage boundary: the only package of relay that speaks SQL.

``base`` is the contract (``Store`` for the running relay, ``Reader`` for people's reads),
``relay.records`` what crosses it (re-exported here), ``sqlite`` the first implementation,
``postgresql`` the second. Everything else imports from here. Importing this package loads
neither backend: ``open_store`` and ``open_reader`` load the one the config names.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from relay.records import (
    MAX_LIMIT,
    REPLAY_STATES,
    STATUSES,
    Action,
    AttemptRecord,
    Claim,
    DeadFilter,
    EventFilter,
    EventPayload,
    Gauges,
    Limits,
    NewEvent,
    Rejection,
    ReplaySelection,
    ReplayTarget,
    Stored,
    Tally,
    Window,
    since_to_time,
)
from relay.sections import StorageConfig
from relay.store.base import HandOff, Reader, Store

__all__ = [
    "MAX_LIMIT",
    "REPLAY_STATES",
    "STATUSES",
    "Action",
    "AttemptRecord",
    "Claim",
    "DeadFilter",
    "EventFilter",
    "EventPayload",
    "Gauges",
    "HandOff",
    "Limits",
    "NewEvent",
    "Reader",
    "Rejection",
    "ReplaySelection",
    "ReplayTarget",
    "Store",
    "Stored",
    "Tally",
    "Window",
    "is_url",
    "open_reader",
    "open_store",
    "since_to_time",
]


async def open_store(config: StorageConfig) -> Store:
    """The database the config names: the SQLite file (for this relay alone), or the
    PostgreSQL database at ``url`` (shared with other relays)."""
    if config.url is not None:
        from relay.store.postgresql import PgStore  # psycopg only when asked for

        return await PgStore.open(config)
    from relay.store.sqlite import SqliteStore

    return await SqliteStore.open(config)


def is_url(where: Path | str) -> bool:
    return str(where).startswith(("postgresql://", "postgres://"))


def open_reader(where: Path | str) -> AbstractContextManager[Reader]:
    """``with open_reader(path_or_url) as reader:``: people's reads, read-only, relay
    running or not."""
    if is_url(where):
        from relay.store.postgresql import read_only as pg_read_only

        return pg_read_only(str(where))
    from relay.store.sqlite import read_only

    return read_only(where)
