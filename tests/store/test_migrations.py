"""A database of every earlier schema version, with rows in every table, upgrades to the
current one when relay opens it, and everything in it stays readable and usable."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from relay import sql
from relay.records import Action, DeadFilter, EventFilter, ReplaySelection
from relay.sections import StorageConfig
from relay.store import open_store

T0 = 1_700_000_000.0
VERSIONS = [n for n, _, _ in sql.migrations()]

# Every column any version had, with a value; a version gets those its tables have.
ROWS: dict[str, list[dict[str, Any]]] = {
    "events": [
        {
            "id": f"evt_{n}",
            "source": "s",
            "received_at": T0 + n,
            "idempotency_key": f"k{n}",
            "event_type": "invoice.paid",
            "content_type": "application/json",
            "remote_addr": "127.0.0.1",
            "headers": json.dumps([["Content-Type", "application/json"]]),
            "body": json.dumps({"n": n}).encode(),
            "occurred_at": T0,
            "redacted_at": None,
        }
        for n in range(3)
    ],
    "deliveries": [
        {
            "id": n + 1,
            "event_id": f"evt_{n}",
            "destination": "a",
            "state": state,
            "attempts": 1,
            "next_attempt_at": T0 + n,
            "lease_until": T0 + 600 if state == "pending" else None,
            "created_at": T0 + n,
            "updated_at": T0 + n,
            "delivered_at": T0 + n if state == "delivered" else None,
            "last_status": {"pending": None, "delivered": 200, "dead": 422}[state],
            "last_error": "HTTP 422" if state == "dead" else None,
            "ordering_key": None,
            "replay_of": None,
        }
        for n, state in enumerate(["delivered", "dead", "pending"])
    ],
    "attempts": [
        {
            "id": 1,
            "delivery_id": 2,
            "number": 1,
            "started_at": T0,
            "duration_ms": 3.0,
            "status": 422,
            "error": "HTTP 422",
            "response_excerpt": "no",
            "outcome": "dead",
        }
    ],
    "rejections": [
        {
            "id": 1,
            "at": T0,
            "source": "s",
            "status": 401,
            "reason": "bad signature",
            "remote_addr": "10.0.0.1",
            "method": "POST",
            "headers": "[]",
        }
    ],
    "destination_state": [
        {"destination": "b", "paused": 1, "paused_at": T0, "reason": "why", "updated_at": T0}
    ],
}


def _build(path: Path, version: int) -> None:
    """A database at ``version`` (0: empty file) with ROWS in every table it has."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for number, _, script in sql.migrations():
            if number > version:
                break
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, rows in ROWS.items():
            if table not in tables:
                continue
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            for row in rows:
                names = [c for c in columns if c in row]
                marks = ",".join("?" * len(names))
                conn.execute(
                    f"INSERT INTO {table} ({','.join(names)}) VALUES ({marks})",  # noqa: S608
                    [row[c] for c in names],
                )


@pytest.mark.parametrize("version", [0, *VERSIONS[:-1]], ids=lambda v: f"from-{v}")
async def test_upgrade_from_every_earlier_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "relay.db"
    _build(path, version)
    had_pauses = "destination_state" in _tables(path)
    store = await open_store(StorageConfig(path=path))
    store.start()
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == VERSIONS[-1]
        if version == 0:
            return  # a new database: nothing to keep
        assert store.released == 1  # the pending delivery's stale lease
        events = await store.read(lambda r: r.events(EventFilter()))
        assert [e["id"] for e in events] == ["evt_2", "evt_1", "evt_0"]
        dead = await store.read(lambda r: r.dead(DeadFilter()))
        assert [d["event_id"] for d in dead] == ["evt_1"]
        stats = await store.read(lambda r: r.stats(T0 + 60))
        assert stats["destinations"]["a"]["dead"] == 1
        [claim] = await store.claim("a", T0 + 10, 5, lease=30)
        assert (claim.event_id, claim.attempt) == ("evt_2", 2)
        targets = await store.read(lambda r: r.replay_targets(ReplaySelection()))
        answer, _ = await store.replay(targets, Action("test", None, "replay"), False, T0 + 20)
        assert answer["destinations"] == {"a": 1}
        assert (await store.load_events(["evt_0"]))["evt_0"].body == b'{"n": 0}'
        duplicate = await store.ingest(_again())  # the old unique index still decides
        assert (duplicate.event_id, duplicate.duplicate) == ("evt_0", True)
        if had_pauses:
            assert await store.paused_destinations() == {"b": "why"}
    finally:
        await store.close()


def _again() -> Any:
    from relay.records import NewEvent

    return NewEvent(
        id="evt_new",
        source="s",
        received_at=T0 + 100,
        idempotency_key="k0",
        event_type=None,
        content_type=None,
        remote_addr=None,
        headers="[]",
        body=b"{}",
        destinations=("a",),
    )


def _tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
