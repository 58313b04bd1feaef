"""The storage boundary: the only package of relay that speaks SQL.

``base`` is the contract (``Store`` for the running relay, ``Reader`` for people's reads),
``records`` what crosses it, ``sqlite`` the first implementation. Everything else imports
from here.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from relay.config import StorageConfig
from relay.store.base import HandOff, Reader, Store
from relay.store.records import (
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
    NewEvent,
    Rejection,
    ReplaySelection,
    ReplayTarget,
    Stored,
    since_to_time,
)
from relay.store.sqlite import SqliteStore, migrate, read_only
from relay.store.sqlite.files import record_offline

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
    "NewEvent",
    "Reader",
    "Rejection",
    "ReplaySelection",
    "ReplayTarget",
    "Store",
    "Stored",
    "migrate",
    "open_reader",
    "open_store",
    "record_offline",
    "since_to_time",
]


async def open_store(config: StorageConfig) -> Store:
    """The database the config names, opened for this relay alone."""
    return await SqliteStore.open(config)


def open_reader(path: Path | str) -> AbstractContextManager[Reader]:
    """``with open_reader(path) as reader:``: people's reads, read-only, relay running or not."""
    return read_only(path)
