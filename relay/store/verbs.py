"""The store's operators' verbs, written once for every database: replay, audit, prune.

Each verb is a program of named statements (``relay/sql/*queries.sql``) that yields one
``Step`` at a time and is sent back what the database answered: the SQLite store drives it
on its writer's connection (``run``), the PostgreSQL store on an async cursor
(``run_async``), each in one transaction of its writer. What differs between databases is
said by a ``Manners`` value the backend passes in, never by the backend's name.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

from relay.records import Action, IncidentRecord, ReplayTarget, repeated_answer

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Step:
    query: str  # a named statement
    params: Any
    want: Literal["rowcount", "row"] = "rowcount"  # what is sent back


Program = Generator[Step, Any, T]
MAX_IDS_KEPT = 1000  # a replay's new delivery ids kept in its audit row (the range is too)

PRUNE = {
    "delivered": "prune_delivered",
    "dead": "prune_dead",
    "rejections": "prune_rejections",
    "redacted": "redact_delivered",
    "audit": "prune_audit",
    "incidents": "prune_incidents",
}


@dataclass(frozen=True, slots=True)
class Manners:
    """How a database shares its replays: ``take_turns`` (a lock first, so two relays on
    one database never both repeat a dead delivery, and a request sent to both finds the
    first one's answer) and ``tell`` (a notice, in the same transaction, that wakes the
    other relays' lanes of the destinations replayed to: its payload's prefix)."""

    take_turns: bool = False
    tell: str | None = None


def audit_row(
    action: Action, now: float, result: Mapping[str, object] | None = None
) -> dict[str, object]:
    return {
        "at": now,
        "actor": action.actor,
        "origin": action.origin,
        "action": action.action,
        "target": action.target,
        "params": json.dumps(action.params, default=str),
        "result": json.dumps(result) if result is not None else "{}",
        "request_id": action.request_id,
    }


def replay(
    manners: Manners,
    targets: list[ReplayTarget],
    action: Action,
    again: bool,
    now: float,
    summary: Mapping[str, object] | None = None,
) -> Program[tuple[dict[str, object], bool]]:
    """One new delivery per target (``again``: also where one was replayed before), and
    its audit row; the same request id again answers what it answered (True: repeated)."""
    if manners.take_turns:
        yield Step("lock_replay", None)
    if action.request_id is not None:
        found = yield Step("audit_answered", (action.request_id,), "row")
        if found is not None:
            return repeated_answer(found[0], found[1], action), True
    counts: dict[str, int] = {}
    events: set[str] = set()
    made_ids: list[int] = []
    for t in targets:
        made = yield Step(
            "replay_delivery",
            {
                "event_id": t.event_id,
                "destination": t.destination,
                "now": now,
                "ordering_key": t.ordering_key,
                "replay_of": t.replay_of,
                "again": again,
            },
            "row",
        )
        if made is not None:  # the new delivery's id; None: not made (replayed before)
            assert t.destination is not None
            counts[t.destination] = counts.get(t.destination, 0) + 1
            events.add(t.event_id)
            made_ids.append(int(made[0]))
    result: dict[str, object] = {
        **(summary or {}),
        "replayed": sum(counts.values()),
        "events": len(events),
        "destinations": counts,
    }
    if made_ids:  # which deliveries it made: the first ones by id, and the range
        result["deliveries"] = made_ids[:MAX_IDS_KEPT]
        result["first_delivery"], result["last_delivery"] = min(made_ids), max(made_ids)
    yield Step("audit_insert", audit_row(action, now, result))
    if counts and manners.tell is not None:
        yield Step("wake_lanes", (f"{manners.tell}|{','.join(sorted(counts))}",))
    return result, False


def audit(action: Action, result: Mapping[str, object], now: float) -> Program[int]:
    inserted: int = yield Step("audit_insert", audit_row(action, now, result))
    return inserted


def save_incident(incident: IncidentRecord) -> Program[int]:
    """Insert an incident (no id yet) or write its new state; its id."""
    row = {**asdict(incident)}
    found = yield Step("incident_insert" if incident.id is None else "incident_update", row, "row")
    return int(found[0])


def prune(kind: str, before: float, limit: int, now: float) -> Program[int]:
    """One bounded batch of ``kind`` (PRUNE's keys) older than ``before``: how many rows."""
    changed: int = yield Step(PRUNE[kind], {"before": before, "batch": limit, "now": now})
    return changed


def run(program: Program[T], execute: Callable[[Step], Any]) -> T:
    """Drive ``program`` with ``execute(step)``, which answers each step (a DB-API
    connection's rowcount or row)."""
    answer: Any = None
    try:
        while True:
            answer = execute(program.send(answer))
    except StopIteration as done:
        result: T = done.value
        return result


async def run_async(program: Program[T], execute: Callable[[Step], Awaitable[Any]]) -> T:
    """``run`` for a driver that awaits each statement."""
    answer: Any = None
    try:
        while True:
            answer = await execute(program.send(answer))
    except StopIteration as done:
        result: T = done.value
        return result
