"""Reading the database for people: events, one event's story, dead deliveries, stats.

Plain functions over a ``sqlite3`` connection, shared by the admin API (which runs them in
a thread) and the CLI (which opens the file read-only, so it works whether or not relay is
running). Lists are paged by keyset (``before`` an id), so a page costs the same on the
millionth event as on the first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from relay.configtypes import parse_duration
from relay.verify.base import redacted
from relay.verify.timestamps import parse_instant

STATUSES = ("pending", "delivered", "dead", "unrouted")
T = TypeVar("T")
MAX_LIMIT = 1000


@contextlib.contextmanager
def read_only(path: Path | str) -> Iterator[sqlite3.Connection]:
    """A read-only connection: never blocks relay's writer (WAL), never writes."""
    uri = f"file:{Path(path).resolve()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        conn.execute("PRAGMA query_only = ON")
        yield conn
    finally:
        conn.close()


async def read_in_thread(path: Path | str, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work`` on a fresh read-only connection in a thread: a slow search never holds
    up the event loop, the scheduler's reads or the writer."""

    def run() -> T:
        with read_only(path) as conn:
            return work(conn)

    return await asyncio.to_thread(run)


def since_to_time(value: str | float | None, now: float | None = None) -> float | None:
    """A time bound: Unix seconds, RFC 3339, or a duration ago (``"2h"``)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    instant = parse_instant(value)
    if instant is not None and instant > 1e8:  # a moment, not a number of seconds ago
        return instant
    try:
        return (now if now is not None else time.time()) - parse_duration(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time (Unix seconds, RFC 3339) or a duration like 2h"
        ) from None


@dataclass(frozen=True)
class EventFilter:
    source: str | None = None
    event_type: str | None = None  # a glob: invoice.*
    status: str | None = None  # pending | delivered | dead | unrouted
    since: float | None = None
    until: float | None = None
    key: str | None = None
    text: str | None = None  # searched in the body
    before: str | None = None  # keyset: events older than this id
    limit: int = 50

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.source:
            clauses.append("e.source = ?")
            params.append(self.source)
        if self.event_type:
            # Unary + keeps SQLite on the primary key (newest first, stop at the page size)
            # instead of the type index, which would sort every event of the type.
            clauses.append("+e.event_type GLOB ?")
            params.append(self.event_type)
        if self.since is not None:
            clauses.append("e.received_at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("e.received_at < ?")
            params.append(self.until)
        if self.key:
            clauses.append("e.idempotency_key = ?")
            params.append(self.key)
        if self.text:
            clauses.append("instr(CAST(e.body AS TEXT), ?) > 0")
            params.append(self.text)
        if self.before:
            clauses.append("e.id < ?")
            params.append(self.before)
        if self.status == "unrouted":
            clauses.append("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)")
        elif self.status:
            if self.status not in STATUSES:
                raise ValueError(f"status must be one of {', '.join(STATUSES)}")
            clauses.append(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = ?)"
            )
            params.append(self.status)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_events(conn: sqlite3.Connection, f: EventFilter) -> list[dict[str, Any]]:
    where, params = f.where()
    limit = max(1, min(f.limit, MAX_LIMIT))
    rows = conn.execute(
        "SELECT e.id, e.source, e.received_at, e.event_type, e.idempotency_key, length(e.body),"
        " (SELECT group_concat(d.destination || ':' || d.state, ' ') FROM deliveries d"
        "   WHERE d.event_id = e.id)"
        f" FROM events e{where} ORDER BY e.id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [
        {
            "id": r[0],
            "source": r[1],
            "received_at": r[2],
            "event_type": r[3],
            "idempotency_key": r[4],
            "body_bytes": r[5],
            "deliveries": dict(pair.split(":", 1) for pair in (r[6] or "").split()),
        }
        for r in rows
    ]


def _body(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"encoding": "base64", "body": base64.b64encode(raw).decode()}
    try:
        return {"encoding": "json", "body": json.loads(text), "raw": text}
    except ValueError:
        return {"encoding": "text", "body": text}


def show_event(conn: sqlite3.Connection, event_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id, source, received_at, occurred_at, event_type, idempotency_key,"
        " content_type, remote_addr, headers, body, redacted_at FROM events WHERE id = ?",
        (event_id,),
    ).fetchone()
    if row is None:
        return None
    event: dict[str, Any] = {
        "id": row[0],
        "source": row[1],
        "received_at": row[2],
        "occurred_at": row[3],
        "event_type": row[4],
        "idempotency_key": row[5],
        "content_type": row[6],
        "remote_addr": row[7],
        "headers": redacted((name, value) for name, value in json.loads(row[8])),
        "redacted_at": row[10],
        **_body(row[9]),
    }
    deliveries = []
    for d in conn.execute(
        "SELECT id, destination, state, attempts, next_attempt_at, created_at, delivered_at,"
        " last_status, last_error, replay_of FROM deliveries WHERE event_id = ? ORDER BY id",
        (event_id,),
    ):
        attempts = [
            {
                "number": a[0],
                "started_at": a[1],
                "duration_ms": a[2],
                "status": a[3],
                "error": a[4],
                "response_excerpt": a[5],
                "outcome": a[6],
            }
            for a in conn.execute(
                "SELECT number, started_at, duration_ms, status, error, response_excerpt,"
                " outcome FROM attempts WHERE delivery_id = ? ORDER BY id",
                (d[0],),
            )
        ]
        deliveries.append(
            {
                "id": d[0],
                "destination": d[1],
                "state": d[2],
                "attempts": d[3],
                "next_attempt_at": d[4],
                "created_at": d[5],
                "delivered_at": d[6],
                "last_status": d[7],
                "last_error": d[8],
                "replay_of": d[9],
                "history": attempts,
            }
        )
    event["deliveries"] = deliveries
    return event


@dataclass(frozen=True)
class DeadFilter:
    destination: str | None = None
    source: str | None = None
    event_type: str | None = None
    since: float | None = None
    until: float | None = None
    error: str | None = None  # text in last_error
    include_replayed: bool = False

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["d.state = 'dead'"]
        params: list[Any] = []
        for column, value in (
            ("d.destination = ?", self.destination),
            ("e.source = ?", self.source),
            ("e.event_type GLOB ?", self.event_type),
            ("d.updated_at >= ?", self.since),
            ("d.updated_at < ?", self.until),
            ("instr(d.last_error, ?) > 0", self.error),
        ):
            if value is not None and value != "":
                clauses.append(column)
                params.append(value)
        if not self.include_replayed:
            clauses.append("NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = d.id)")
        return " WHERE " + " AND ".join(clauses), params


def list_dead(conn: sqlite3.Connection, f: DeadFilter, limit: int = 50) -> list[dict[str, Any]]:
    where, params = f.where()
    rows = conn.execute(
        "SELECT d.id, d.event_id, e.source, e.event_type, d.destination, d.attempts,"
        " d.last_status, d.last_error, d.updated_at FROM deliveries d"
        f" JOIN events e ON e.id = d.event_id{where} ORDER BY d.id DESC LIMIT ?",
        [*params, max(1, min(limit, MAX_LIMIT))],
    ).fetchall()
    keys = (
        "delivery_id",
        "event_id",
        "source",
        "event_type",
        "destination",
        "attempts",
        "last_status",
        "last_error",
        "died_at",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def count_dead(conn: sqlite3.Connection, f: DeadFilter) -> int:
    where, params = f.where()
    row = conn.execute(
        f"SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id{where}",
        params,
    ).fetchone()
    return int(row[0])


def count_by_destination(where: str) -> str:
    """Dead deliveries matching a DeadFilter's WHERE clause, counted per destination."""
    return (
        "SELECT d.destination, COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
        f"{where} GROUP BY d.destination"
    )


def replay_statement(f: DeadFilter, now: float) -> tuple[str, list[Any]]:
    """The INSERT that replays every dead delivery matching ``f``: one new pending delivery
    each, pointing back at the dead one, which stays as history."""
    where, params = f.where()
    statement = (
        "INSERT INTO deliveries (event_id, destination, next_attempt_at, created_at,"
        " updated_at, ordering_key, replay_of)"
        " SELECT d.event_id, d.destination, ?, ?, ?, d.ordering_key, d.id"
        f" FROM deliveries d JOIN events e ON e.id = d.event_id{where}"
    )
    return statement, [now, now, now, *params]


def delivered_destinations(conn: sqlite3.Connection) -> list[str]:
    """Destinations with delivered rows, by a skip-scan of the (state, destination) index:
    one index probe per destination instead of a pass over every delivery."""
    rows = conn.execute(
        "WITH RECURSIVE d(name) AS ("
        " SELECT MIN(destination) FROM deliveries WHERE state = 'delivered'"
        " UNION ALL SELECT (SELECT MIN(destination) FROM deliveries"
        "  WHERE state = 'delivered' AND destination > d.name) FROM d WHERE d.name IS NOT NULL)"
        " SELECT name FROM d WHERE name IS NOT NULL"
    ).fetchall()
    return [row[0] for row in rows]


def stats(conn: sqlite3.Connection, now: float | None = None) -> dict[str, Any]:
    """Counts for the last hour and the current backlog, each from an index (a full scan of
    a million-event table would cost a second on every refresh)."""
    now = now if now is not None else time.time()
    hour = now - 3600
    sources: dict[str, dict[str, Any]] = {
        r[0]: {"events_last_hour": r[1]}
        for r in conn.execute(
            "SELECT source, COUNT(*) FROM events WHERE received_at >= ? GROUP BY source", (hour,)
        )
    }
    for source, count in conn.execute(
        "SELECT source, COUNT(*) FROM rejections WHERE at >= ? GROUP BY source", (hour,)
    ):
        sources.setdefault(source, {"events_last_hour": 0})["rejected_last_hour"] = count
    destinations: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        return destinations.setdefault(
            name,
            {
                "pending": 0,
                "dead": 0,
                "delivered_last_hour": 0,
                "oldest_pending_seconds": None,
                "paused": False,
            },
        )

    for name, count, oldest in conn.execute(
        "SELECT destination, COUNT(*), MIN(created_at) FROM deliveries"
        " WHERE state = 'pending' GROUP BY destination"
    ):
        entry(name).update(pending=count, oldest_pending_seconds=int(now - oldest))
    for name, count in conn.execute(
        "SELECT destination, COUNT(*) FROM deliveries d WHERE state = 'dead'"
        " AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = d.id)"
        " GROUP BY destination"
    ):
        entry(name)["dead"] = count
    for name in delivered_destinations(conn):
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered' AND destination = ?"
            " AND updated_at >= ?",
            (name, hour),
        ).fetchone()
        entry(name)["delivered_last_hour"] = count
    for name, paused in conn.execute("SELECT destination, paused FROM destination_state"):
        if name in destinations:
            destinations[name]["paused"] = bool(paused)
    ordered = {name: destinations[name] for name in sorted(destinations)}
    return {"at": now, "sources": sources, "destinations": ordered}
