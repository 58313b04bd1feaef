"""Filters as SQL: the one place where WHERE clauses are put together.

Every value is a bound parameter; only fixed fragments from this module are joined, so no
request can add SQL. The statements that use them are fixed apart from the WHERE clause,
which is only ever built here. Fragments are written for SQLite (``?`` marks); where
PostgreSQL says it otherwise, ``Dialect`` holds its words, and ``Dialect.finish`` turns
the marks into psycopg's ``%s``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from relay.ids import id_floor
from relay.records import DeadFilter, EventFilter, ReplaySelection

Clause = tuple[str, list[Any]]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    glob: str  # a column matching a shell pattern (* ? [...]); {} is the column
    contains: str  # a text column containing a string
    # An event's body (bytes) containing a string: as given, in any case (ASCII), or
    # form-encoded (so "@" finds "%40" in a Twilio body): three parameters.
    body_contains: str
    same: str  # equal, NULL matching NULL
    type_first: str  # event type filter that keeps the newest-first plan
    destinations: str  # "name:state name:state" of an event's deliveries
    # Before a column: "do not look this up in an index" (SQLite's unary +). An event's
    # deliveries are found by event_id; without it, on a database never ANALYZEd, SQLite
    # looked them up by (state, destination) instead and read every dead delivery once per
    # event listed: 79 s for "dead at app" at 1,000,000 events (bench/console.py).
    plain: str = ""
    # Each (event, destination)'s latest delivery among those {where} selects (the
    # candidates of a replay of any state).
    latest_per_destination: str = ""
    regex_globs: bool = False  # a glob's parameter is a regular expression (glob_to_regex)
    marks: str = "?"  # the driver's parameter marks
    json_lists: bool = False  # a list parameter is JSON text (for json_each), not an array

    def pattern(self, glob: str) -> str:
        """The parameter for ``glob``: the pattern, or a regular expression that says the
        same."""
        return glob_to_regex(glob) if self.regex_globs else glob

    def finish(self, statement: str) -> str:
        """The statement with this driver's parameter marks."""
        return statement if self.marks == "?" else statement.replace("?", self.marks)

    def id_list(self, ids: list[str]) -> Any:
        """A list of ids as one parameter."""
        return json.dumps(ids) if self.json_lists else ids


SQLITE = Dialect(
    name="sqlite",
    glob="{} GLOB ?",
    contains="instr({}, ?) > 0",
    body_contains=(
        "(instr(CAST(e.body AS TEXT), ?) > 0"
        " OR instr(lower(CAST(e.body AS TEXT)), lower(?)) > 0"
        " OR instr(lower(CAST(e.body AS TEXT)), lower(?)) > 0)"
    ),
    same="{} IS ?",
    # Unary + keeps SQLite on the primary key (newest first, stop at the page size)
    # instead of the type index, which would sort every event of the type.
    type_first="+e.event_type GLOB ?",
    destinations="group_concat(d.destination || ':' || d.state, ' ')",
    plain="+",
    # A bare column beside MAX() comes from the row of the maximum (SQLite's rule).
    latest_per_destination=(
        "SELECT e.id, e.source, d.destination, MAX(d.id), d.ordering_key"
        " FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE 1{where} GROUP BY d.event_id, d.destination"
    ),
    json_lists=True,
)
POSTGRESQL = Dialect(
    name="postgresql",
    glob="{} ~ ?",
    contains="strpos({}, ?) > 0",
    # encode(…, 'escape') is the body as text with other than ASCII bytes escaped: lower()
    # cannot fail on bytes that are not UTF-8, and ASCII text is found in any case.
    body_contains=(
        "(position(convert_to(?, 'UTF8') in e.body) > 0"
        " OR position(lower(?) in lower(encode(e.body, 'escape'))) > 0"
        " OR position(lower(?) in lower(encode(e.body, 'escape'))) > 0)"
    ),
    same="{} IS NOT DISTINCT FROM ?",
    type_first="e.event_type ~ ?",
    destinations="string_agg(d.destination || ':' || d.state, ' ')",
    latest_per_destination=(
        "(SELECT DISTINCT ON (d.event_id, d.destination) e.id, e.source, d.destination, d.id,"
        " d.ordering_key FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE true{where} ORDER BY d.event_id, d.destination, d.id DESC)"
    ),
    regex_globs=True,
    marks="%s",
)


def glob_to_regex(glob: str) -> str:
    """SQLite's GLOB as an anchored POSIX regular expression: * any run, ? one character,
    [...] a set ([^...] its complement); everything else literal."""
    out = ["^"]
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in glob[i + 2 :]:
            end = glob.index("]", i + 2)
            inner = glob[i + 1 : end]
            negate = inner.startswith("^")
            body = inner[1:] if negate else inner
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return "".join(out)


_AT_DESTINATION = (
    "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND {0}d.destination = ?)"
)
_AT_DESTINATION_IN_STATE = (
    "EXISTS (SELECT 1 FROM deliveries d"
    " WHERE d.event_id = e.id AND {0}d.destination = ? AND {0}d.state = ?)"
)
_IN_STATE = "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND {0}d.state = ?)"


def type_glob(given: str) -> str:
    """A type filter as a glob: one without * ? [ is a prefix (``invoice`` finds
    ``invoice.paid``)."""
    return given if any(c in given for c in "*?[") else given + "*"


ID_SLACK = 60.0  # seconds: an item split from a batch may get its id a little later


SPARSE_STATES = ("pending", "dead")
SPARSE = 50_000  # deliveries in a state, at most, for a list to start from them


def count_in_state(state: str, destination: str | None) -> Clause:
    """How many deliveries are in ``state`` (at ``destination``), counted up to a limit
    (the last parameter): whether a list of their events should start from them."""
    where = "state = ?" + (" AND destination = ?" if destination else "")
    params: list[Any] = [state, destination] if destination else [state]
    inner = f"SELECT 1 FROM deliveries WHERE {where} LIMIT ?"  # noqa: S608 - marks only
    return f"SELECT COUNT(*) FROM ({inner}) AS c", params  # noqa: S608


def events_where(f: EventFilter, dialect: Dialect = SQLITE, sparse: bool = False) -> Clause:
    """The WHERE clause of an events list. With ``sparse`` (few deliveries in the state
    asked for; see Reader.events), a state filter starts from those deliveries."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(fragment: str, value: Any) -> None:
        clauses.append(fragment)
        params.append(value)

    if f.source:
        add("e.source = ?", f.source)
    if f.event_type:
        add(dialect.type_first, dialect.pattern(type_glob(f.event_type)))
    # An id starts with the millisecond it was received (relay.ids), so a time range is also
    # a range of ids: the list then walks the primary key from the range's end and stops at
    # a page, instead of reading the whole range through events_received and sorting it.
    # The id bounds are wider than the times (ID_SLACK), so they never leave an event out.
    if f.since is not None:
        add("e.received_at >= ?", f.since)
        add("e.id >= ?", id_floor(f.since - ID_SLACK))
    if f.until is not None:
        add("e.received_at < ?", f.until)
        add("e.id < ?", id_floor(f.until + ID_SLACK))
    if f.key:
        add("e.idempotency_key = ?", f.key)
    if f.text:
        clauses.append(dialect.body_contains)
        params.extend([f.text, f.text, quote_plus(f.text)])
    if sparse and f.status in SPARSE_STATES:
        at = " AND d.destination = ?" if f.destination else ""
        within = f"e.id IN (SELECT d.event_id FROM deliveries d WHERE d.state = ?{at})"  # noqa: S608 - marks only
        clauses.append(within)
        params.extend([f.status, f.destination] if f.destination else [f.status])
    elif f.destination:
        if f.status in ("pending", "delivered", "dead"):  # in that state there
            add(_AT_DESTINATION_IN_STATE.format(dialect.plain), f.destination)
            params.append(f.status)
        else:
            add(_AT_DESTINATION.format(dialect.plain), f.destination)
    if f.before:
        add("e.id < ?", f.before)
    if f.status == "unrouted":
        clauses.append(_NOT_ROUTED)
    elif f.status and not f.destination and not sparse:  # else a clause above has it
        add(_IN_STATE.format(dialect.plain), f.status)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def dead_where(f: DeadFilter, dialect: Dialect = SQLITE) -> Clause:
    """Over ``deliveries d JOIN events e``."""
    clauses = ["d.state = 'dead'"]
    params: list[Any] = []
    pattern = dialect.pattern(type_glob(f.event_type)) if f.event_type else None
    for fragment, value in (
        ("d.destination = ?", f.destination),
        ("e.source = ?", f.source),
        (dialect.glob.format("e.event_type"), pattern),
        ("d.updated_at >= ?", f.died_since),
        ("d.updated_at < ?", f.died_until),
        ("d.event_id = ?", f.event),
        ("d.id < ?", f.before_id),
    ):
        if value is not None and value != "":
            clauses.append(fragment)
            params.append(value)
    if f.exact_error:
        clauses.append(dialect.same.format("d.last_error"))
        params.append(f.error)
    elif f.error:
        clauses.append(dialect.contains.format("d.last_error"))
        params.append(f.error)
    if f.deliveries:
        clauses.append(f"d.id IN ({','.join('?' * len(f.deliveries))})")
        params.extend(f.deliveries)
    if f.key:
        clauses.append("e.idempotency_key = ?")
        params.append(f.key)
    if f.text:
        clauses.append(dialect.body_contains)
        params.extend([f.text, f.text, quote_plus(f.text)])
    if not f.include_replayed:
        clauses.append(NOT_REPLAYED)
    return " WHERE " + " AND ".join(clauses), params


# "Dead and not yet replayed", the one definition (the view dead_unreplayed, migration
# 0006, says the same for operators' queries).
NOT_REPLAYED = "NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = d.id)"


# The fixed parts of the statements a WHERE clause is joined to.
_EVENTS = (
    "SELECT e.id, e.source, e.received_at, e.event_type, e.idempotency_key, length(e.body),"
    " (SELECT {} FROM deliveries d WHERE d.event_id = e.id) FROM events e"
)
_DEAD = (
    "SELECT d.id, d.event_id, e.source, e.event_type, d.destination, d.attempts,"
    " d.last_status, d.last_error, d.updated_at"
    " FROM deliveries d JOIN events e ON e.id = d.event_id"
)
_DEAD_COUNT = "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
_DEAD_SUMMARY = (
    "SELECT COUNT(*), MAX(d.updated_at) FROM deliveries d JOIN events e ON e.id = d.event_id"
)
_DEAD_BY_DESTINATION = (
    "SELECT d.destination, COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
)


def list_events(where: str, dialect: Dialect = SQLITE) -> str:
    return f"{_EVENTS.format(dialect.destinations)}{where} ORDER BY e.id DESC LIMIT ?"


def list_dead(where: str) -> str:
    return f"{_DEAD}{where} ORDER BY d.id DESC LIMIT ?"


def count_dead(where: str) -> str:
    return f"{_DEAD_COUNT}{where}"


def summarize_dead(where: str) -> str:
    return f"{_DEAD_SUMMARY}{where}"


def dead_by_destination(where: str) -> str:
    return f"{_DEAD_BY_DESTINATION}{where} GROUP BY d.destination"


# What dead letters can be grouped by: the column each stands for.
DEAD_GROUPS = {
    "destination": "d.destination",
    "error": "d.last_error",
    "type": "e.event_type",
    "source": "e.source",
}


def dead_grouped(where: str, by: str) -> str:
    column = DEAD_GROUPS[by]  # KeyError for anything else: never a caller's text
    return (
        f"SELECT {column}, COUNT(*), MAX(d.updated_at)"  # noqa: S608 - column from DEAD_GROUPS
        f" FROM deliveries d JOIN events e ON e.id = d.event_id{where}"
        f" GROUP BY {column} ORDER BY COUNT(*) DESC LIMIT ?"
    )


_DEAD_OUTCOMES = (
    "SELECT d.last_status, d.last_error, COUNT(*), MAX(d.updated_at)"
    " FROM deliveries d JOIN events e ON e.id = d.event_id"
)


def dead_outcomes(where: str) -> str:
    """Dead letters counted per last status and error: relay.incidents.failure_class puts
    each in its class (one definition of a class, in Python, for every backend)."""
    order = " GROUP BY d.last_status, d.last_error ORDER BY COUNT(*) DESC LIMIT ?"
    return f"{_DEAD_OUTCOMES}{where}{order}"


def ids_in(count: int) -> str:
    """``?,?,…``: the marks of an IN list of ``count`` values."""
    return ",".join("?" * count)


def replay_candidates(sel: ReplaySelection, dialect: Dialect = SQLITE) -> Clause:
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
        on_events(dialect.glob.format("e.event_type"), dialect.pattern(type_glob(sel.event_type)))
    if sel.since is not None:
        on_events("e.received_at >= ?", sel.since)
    if sel.until is not None:
        on_events("e.received_at < ?", sel.until)
    if sel.key:
        on_events("e.idempotency_key = ?", sel.key)
    if sel.text:
        events.append(dialect.body_contains)
        params.extend([sel.text, sel.text, quote_plus(sel.text)])
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
        latest = dialect.latest_per_destination.replace("{where}", where_events)
        return f"{latest} UNION ALL {_UNROUTED}{where_events}", [*event_params, *event_params]
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
            deliveries.append(dialect.same.format("d.last_error"))
            params.append(sel.error)
        elif sel.error:
            deliveries.append(dialect.contains.format("d.last_error"))
            params.append(sel.error)
        for fragment, bound in (
            ("d.updated_at <= ?", sel.died_before),
            ("d.updated_at >= ?", sel.died_since),
            ("d.updated_at < ?", sel.died_until),
        ):
            if bound is not None:
                deliveries.append(fragment)
                params.append(bound)
    where = " AND ".join(deliveries)
    return f"{_CANDIDATES} WHERE {where}{where_events} ORDER BY d.id", [*params, *event_params]


_CANDIDATES = (
    "SELECT e.id, e.source, d.destination, d.id, d.ordering_key"
    " FROM deliveries d JOIN events e ON e.id = d.event_id"
)
# A split request went somewhere if its items did: it is not unrouted (issue 29: 2,507
# batches whose items were all delivered were listed as unrouted).
_NOT_ROUTED = (
    "NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = e.id)"
    " AND NOT EXISTS (SELECT 1 FROM events i WHERE i.parent_id = e.id)"
)
_UNROUTED = (
    "SELECT e.id, e.source, NULL, NULL, NULL FROM events e"
    " WHERE NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = e.id)"
    " AND NOT EXISTS (SELECT 1 FROM events i WHERE i.parent_id = e.id)"
)
