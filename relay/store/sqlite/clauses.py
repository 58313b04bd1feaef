"""Filters as SQL: the one place where WHERE clauses are put together.

Every value is a bound parameter; only fixed fragments from this module are joined, so no
request can add SQL. The statements that use them are fixed apart from the WHERE clause,
which is only ever built here.
"""

from __future__ import annotations

from typing import Any

from relay.store.records import DeadFilter, EventFilter, ReplaySelection

Clause = tuple[str, list[Any]]


def events_where(f: EventFilter) -> Clause:
    clauses: list[str] = []
    params: list[Any] = []

    def add(fragment: str, value: Any) -> None:
        clauses.append(fragment)
        params.append(value)

    if f.source:
        add("e.source = ?", f.source)
    if f.event_type:
        # Unary + keeps SQLite on the primary key (newest first, stop at the page size)
        # instead of the type index, which would sort every event of the type.
        add("+e.event_type GLOB ?", f.event_type)
    if f.since is not None:
        add("e.received_at >= ?", f.since)
    if f.until is not None:
        add("e.received_at < ?", f.until)
    if f.key:
        add("e.idempotency_key = ?", f.key)
    if f.text:
        add("instr(CAST(e.body AS TEXT), ?) > 0", f.text)
    if f.before:
        add("e.id < ?", f.before)
    if f.status == "unrouted":
        clauses.append("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)")
    elif f.status:
        add("EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = ?)", f.status)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def dead_where(f: DeadFilter) -> Clause:
    """Over ``deliveries d JOIN events e``."""
    clauses = ["d.state = 'dead'"]
    params: list[Any] = []
    for fragment, value in (
        ("d.destination = ?", f.destination),
        ("e.source = ?", f.source),
        ("e.event_type GLOB ?", f.event_type),
        ("d.updated_at >= ?", f.since),
        ("d.updated_at < ?", f.until),
        ("d.event_id = ?", f.event),
    ):
        if value is not None and value != "":
            clauses.append(fragment)
            params.append(value)
    if f.exact_error:
        clauses.append("d.last_error IS ?")
        params.append(f.error)
    elif f.error:
        clauses.append("instr(d.last_error, ?) > 0")
        params.append(f.error)
    if f.deliveries:
        clauses.append(f"d.id IN ({','.join('?' * len(f.deliveries))})")
        params.extend(f.deliveries)
    if not f.include_replayed:
        clauses.append(NOT_REPLAYED)
    return " WHERE " + " AND ".join(clauses), params


# "Dead and not yet replayed", the one definition (the view dead_unreplayed, migration
# 0006, says the same for operators' queries).
NOT_REPLAYED = "NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = d.id)"


# The fixed parts of the statements a WHERE clause is joined to.
_EVENTS = (
    "SELECT e.id, e.source, e.received_at, e.event_type, e.idempotency_key, length(e.body),"
    " (SELECT group_concat(d.destination || ':' || d.state, ' ') FROM deliveries d"
    "   WHERE d.event_id = e.id) FROM events e"
)
_DEAD = (
    "SELECT d.id, d.event_id, e.source, e.event_type, d.destination, d.attempts,"
    " d.last_status, d.last_error, d.updated_at"
    " FROM deliveries d JOIN events e ON e.id = d.event_id"
)
_DEAD_COUNT = "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
_DEAD_BY_DESTINATION = (
    "SELECT d.destination, COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
)
# One new pending delivery per matching dead one, pointing back at it.
_REPLAY = (
    "INSERT INTO deliveries (event_id, destination, next_attempt_at, created_at,"
    " updated_at, ordering_key, replay_of)"
    " SELECT d.event_id, d.destination, ?, ?, ?, d.ordering_key, d.id"
    " FROM deliveries d JOIN events e ON e.id = d.event_id"
)


def list_events(where: str) -> str:
    return f"{_EVENTS}{where} ORDER BY e.id DESC LIMIT ?"


def list_dead(where: str) -> str:
    return f"{_DEAD}{where} ORDER BY d.id DESC LIMIT ?"


def count_dead(where: str) -> str:
    return f"{_DEAD_COUNT}{where}"


def dead_by_destination(where: str) -> str:
    return f"{_DEAD_BY_DESTINATION}{where} GROUP BY d.destination"


def replay(where: str) -> str:
    return f"{_REPLAY}{where}"


def ids_in(count: int) -> str:
    """``?,?,…``: the marks of an IN list of ``count`` values."""
    return ",".join("?" * count)


def replay_candidates(sel: ReplaySelection) -> Clause:
    """The deliveries (or events that went nowhere) a replay selection takes, as rows of
    (event id, source, destination or NULL, delivery id or NULL, ordering key)."""
    events: list[str] = []
    params: list[Any] = []

    def on_events(fragment: str, value: Any) -> None:
        events.append(fragment)
        params.append(value)

    if sel.event is not None:
        on_events("e.id = ?", sel.event)
    if sel.source:
        on_events("e.source = ?", sel.source)
    if sel.event_type:
        on_events("e.event_type GLOB ?", sel.event_type)
    if sel.since is not None:
        on_events("e.received_at >= ?", sel.since)
    if sel.until is not None:
        on_events("e.received_at < ?", sel.until)
    where_events = "".join(f" AND {c}" for c in events)
    event_params = list(params)

    if sel.delivery is not None:
        return (
            f"{_CANDIDATES} WHERE d.id = ?{where_events}",
            [sel.delivery, *event_params],
        )
    if sel.event is not None or sel.state == "any":
        # Each destination the event went to, once (its latest delivery there), and the
        # events that went nowhere.
        return (
            f"{_LATEST_PER_DESTINATION} WHERE 1{where_events} GROUP BY d.event_id, d.destination"
            f" UNION ALL {_UNROUTED}{where_events}",
            [*event_params, *event_params],
        )
    if sel.state == "unrouted":
        return f"{_UNROUTED}{where_events}", event_params
    deliveries = ["d.state = ?"]
    params = [sel.state]
    if sel.destination:  # the dead (or delivered) of that destination, back to it
        deliveries.append("d.destination = ?")
        params.append(sel.destination)
    if sel.state == "dead":
        if not sel.again:
            deliveries.append(NOT_REPLAYED)
        if sel.deliveries:
            deliveries.append(f"d.id IN ({ids_in(len(sel.deliveries))})")
            params.extend(sel.deliveries)
        if sel.exact_error:
            deliveries.append("d.last_error IS ?")
            params.append(sel.error)
        elif sel.error:
            deliveries.append("instr(d.last_error, ?) > 0")
            params.append(sel.error)
        if sel.died_before is not None:
            deliveries.append("d.updated_at <= ?")
            params.append(sel.died_before)
    where = " AND ".join(deliveries)
    return f"{_CANDIDATES} WHERE {where}{where_events} ORDER BY d.id", [*params, *event_params]


_CANDIDATES = (
    "SELECT e.id, e.source, d.destination, d.id, d.ordering_key"
    " FROM deliveries d JOIN events e ON e.id = d.event_id"
)
_LATEST_PER_DESTINATION = (
    "SELECT e.id, e.source, d.destination, MAX(d.id), d.ordering_key"
    " FROM deliveries d JOIN events e ON e.id = d.event_id"
)
_UNROUTED = (
    "SELECT e.id, e.source, NULL, NULL, NULL FROM events e"
    " WHERE NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = e.id)"
)
