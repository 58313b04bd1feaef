"""What crosses the storage boundary: records in and out, and the filters that select them.

Plain values, no SQL: the rest of relay builds these and hands them to a store
(``relay.store.base``), which decides how to find or keep them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relay.configtypes import parse_duration
from relay.errors import KeyReused
from relay.instants import parse_instant

STATUSES = ("pending", "delivered", "dead", "unrouted")
MAX_LIMIT = 1000  # the most rows one list read returns


@dataclass(slots=True)
class NewEvent:
    """A verified request, ready to be stored with one delivery per destination."""

    id: str
    source: str
    received_at: float
    idempotency_key: str | None
    event_type: str | None
    content_type: str | None
    remote_addr: str | None
    headers: str  # JSON array of [name, value]
    body: bytes
    destinations: tuple[str, ...]
    occurred_at: float | None = None
    ordering_keys: tuple[str | None, ...] = ()  # per destination; empty: none ordered
    facts: Facts | None = None  # a normalized event's canonical fields
    # Per destination: True where a stale event is stored but not delivered (stale = "drop").
    drop_stale: tuple[bool, ...] = ()
    # A batch split into items: the items, each an event of its own. This event (the
    # request) is stored only if at least one of them is new.
    items: list[NewEvent] = field(default_factory=list)
    stale: bool = False  # set by the store, in the ingest transaction
    origin: str | None = None  # None: a request to /in/<source>; "catch-up": from the API


@dataclass(frozen=True, slots=True)
class Facts:
    """A normalized event's canonical fields (docs/events.md), stored as columns."""

    parent_id: str | None = None  # an item split from a batch: the request's event
    provider: str | None = None
    channel: str | None = None
    provider_type: str | None = None
    subject: str | None = None
    contact: str | None = None
    conversation: str | None = None
    rank: int | None = None  # the status rank of its shared type; None: moves no status


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request a source refused: kept (bounded) so an operator can see why."""

    at: float
    source: str
    status: int
    reason: str
    remote_addr: str | None
    method: str
    headers: str  # JSON array of [name, value], secrets already redacted


@dataclass(frozen=True, slots=True)
class Stored:
    """What ingest committed: the event's id, or the original's id for a duplicate."""

    event_id: str
    duplicate: bool
    items: int = 0  # a split batch: its items
    new_items: int = 0  # and how many of them were not duplicates


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery leased to this process for one attempt."""

    id: int
    event_id: str
    attempt: int  # this attempt's number, 1-based
    created_at: float
    lease: int = 0  # the lease's fencing id: an outcome is written only under it


@dataclass(frozen=True, slots=True)
class Limits:
    """A destination's limits, for a store shared by several relays to apply to them all
    (on one relay the lane applies them itself)."""

    max_concurrency: int
    rate: float | None = None  # deliveries a second
    burst: float | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """The result of one attempt and what it means for its delivery."""

    delivery_id: int
    number: int
    started_at: float
    duration_ms: float
    status: int | None
    error: str | None
    response_excerpt: str | None
    state: str  # 'pending' (retry later), 'delivered' or 'dead'
    next_attempt_at: float
    finished_at: float
    lease: int = 0  # the fencing id of the lease it was tried under
    strict: bool = False  # an agent's result: also void once the lease has run out
    response_headers: str | None = None  # JSON [[name, value], …], secrets redacted

    @property
    def outcome(self) -> str:
        return "retry" if self.state == "pending" else self.state


@dataclass(frozen=True, slots=True)
class EventPayload:
    """What a delivery sends: the stored request (and, for the canonical envelope, the
    event's fields)."""

    id: str
    source: str
    content_type: str | None
    headers: str
    body: bytes
    received_at: float = 0.0
    event_type: str | None = None
    occurred_at: float | None = None
    facts: Facts | None = None
    stale: bool = False
    origin: str | None = None

    @classmethod
    def of(cls, event: NewEvent) -> EventPayload:
        return cls(
            event.id,
            event.source,
            event.content_type,
            event.headers,
            event.body,
            event.received_at,
            event.event_type,
            event.occurred_at,
            event.facts,
            event.stale,
            event.origin,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> EventPayload:
        """A row of the ``payloads`` query."""
        facts = None
        if any(value is not None for value in row[8:15]):
            facts = Facts(*row[8:15])
        id_, source, content_type, headers, body, received_at, event_type, occurred_at = row[:8]
        return cls(
            id_,
            source,
            content_type,
            headers,
            body,
            received_at,
            event_type,
            occurred_at,
            facts,
            bool(row[15]),
            row[16],
        )


@dataclass(frozen=True, slots=True)
class Gauges:
    """The backlog per destination, for the metrics."""

    pending: dict[str, tuple[int, float]] = field(default_factory=dict)  # count, oldest
    dead: dict[str, int] = field(default_factory=dict)  # dead and not replayed


@dataclass(frozen=True)
class EventFilter:
    """Which events a list shows, newest first, paged by keyset (``before`` an id)."""

    source: str | None = None
    event_type: str | None = None  # a glob: invoice.*
    status: str | None = None  # pending | delivered | dead | unrouted
    since: float | None = None
    until: float | None = None
    key: str | None = None
    text: str | None = None  # searched in the body (any case; form bodies decoded)
    before: str | None = None  # keyset: events older than this id
    limit: int = 50
    destination: str | None = None  # went there (with status: in that state there)

    def __post_init__(self) -> None:
        if self.status and self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")


@dataclass(frozen=True)
class DeadFilter:
    """Which dead deliveries: those not replayed yet, unless ``include_replayed``.

    ``error`` is text found in the last error, or with ``exact_error`` the whole last
    error (None then means "no error recorded"). ``deliveries`` and ``event`` narrow it to
    given deliveries or one event's.
    """

    destination: str | None = None
    source: str | None = None
    event_type: str | None = None  # a glob
    died_since: float | None = None  # died at or after
    died_until: float | None = None  # died before
    error: str | None = None
    exact_error: bool = False
    include_replayed: bool = False
    deliveries: tuple[int, ...] = ()
    event: str | None = None
    before_id: int | None = None  # a page: deliveries older than this one (by id)
    key: str | None = None  # the event's idempotency key
    text: str | None = None  # in the event's body (any case; form bodies decoded)


# A moment as people type it: a date, then a time with a space or a T, seconds optional,
# and a zone optional: without one, UTC, the zone every page and list shows.
_MOMENT = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?"
    r"\s*([Zz]|UTC|[+-]\d{2}:?\d{2})?$"
)


def parse_moment(text: str) -> float | None:
    """``2026-12-07 06:27``, ``2026-12-07T06:27:00Z``, ``2026-12-07``, ``… +01:00``: Unix
    seconds, or None if it is not such a moment."""
    match = _MOMENT.match(text.strip())
    if match is None:
        return None
    day, hour, minute, second, fraction, zone = match.groups()
    clock = f"{hour or '00'}:{minute or '00'}:{second or '00'}{fraction or ''}"
    if zone is None or zone in ("Z", "z", "UTC"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        return datetime.fromisoformat(f"{day}T{clock}{zone}").timestamp()
    except ValueError:  # 2026-13-45 and the like
        return None


def since_to_time(value: str | float | None, now: float | None = None) -> float | None:
    """A time bound: a moment (``2026-12-07 06:27``, RFC 3339; UTC unless it says),
    Unix seconds, or a duration ago (``"2h"``)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    moment = parse_moment(value)
    if moment is not None:
        return moment
    instant = parse_instant(value)
    if instant is not None and instant > 1e8:  # a moment, not a number of seconds ago
        return instant
    try:
        return (now if now is not None else time.time()) - parse_duration(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time (2026-12-07 06:27, UTC unless it says; RFC 3339; Unix "
            "seconds) or a duration like 2h"
        ) from None


REPLAY_STATES = ("dead", "delivered", "unrouted", "any")


@dataclass(frozen=True)
class ReplaySelection:
    """Which events to send again, and where.

    By id (``event``, or ``delivery`` for one delivery), or by a filter (``source``,
    ``event_type`` glob, ``since``/``until`` on the time received, ``state``): ``dead``
    (the default) takes the dead deliveries no replay has repeated yet (``again``: every dead
    one); ``delivered`` the delivered ones; ``unrouted`` events that went nowhere; ``any``
    all of these. Each goes to the destination it went to, or to ``destination`` when one
    is named (which need not be routed from the event's source: a back-fill). An event that
    went nowhere goes where the routes now send it, or to ``destination``.

    The console narrows a dead-letter replay further: ``deliveries`` (the ones selected),
    ``error`` (with ``exact_error``: one group), ``died_since``/``died_until`` (its From and
    Until) and ``died_before`` (the set it showed).
    """

    event: str | None = None
    delivery: int | None = None
    source: str | None = None
    event_type: str | None = None
    since: float | None = None
    until: float | None = None
    state: str = "dead"
    destination: str | None = None
    again: bool = False
    deliveries: tuple[int, ...] = ()
    error: str | None = None
    exact_error: bool = False
    died_before: float | None = None
    died_since: float | None = None  # the console's From and Until, on the time it died
    died_until: float | None = None
    key: str | None = None  # the event's idempotency key
    text: str | None = None  # in the event's body (any case; form bodies decoded)

    def __post_init__(self) -> None:
        if self.state not in REPLAY_STATES:
            raise ValueError(f"state must be one of {', '.join(REPLAY_STATES)}")


@dataclass(frozen=True, slots=True)
class ReplayTarget:
    """One delivery a replay will create. ``destination`` None: the event went nowhere and
    the current routes decide (the caller fills it in)."""

    event_id: str
    source: str
    destination: str | None
    replay_of: int | None  # the delivery it repeats, if any
    ordering_key: str | None


@dataclass(frozen=True, slots=True)
class Action:
    """An operator's action, for the audit trail."""

    actor: str
    origin: str | None
    action: str
    target: str | None = None
    params: dict[str, object] = field(default_factory=dict)
    request_id: str | None = None


def repeated_answer(result: str, params: str, action: Action) -> dict[str, object]:
    """The stored first answer to a request id seen before (``result`` and ``params`` as the
    audit row keeps them), when ``action`` asks the same; KeyReused when it asks something
    else (as Stripe and the IETF Idempotency-Key draft do: a reused key is an error, not a
    silent "done")."""
    asked = json.loads(json.dumps(action.params, default=str))
    stored = json.loads(params)
    if "request" in stored or "request" in asked:
        # The request as it was sent (the API's body): its times may say "2h", which
        # resolve to another moment on a retry, so the resolved selection differs.
        same = stored.get("request") == asked.get("request")
    else:
        same = stored == asked
    if not same:
        raise KeyReused(str(action.request_id))
    answer: dict[str, object] = json.loads(result)
    return answer


@dataclass(frozen=True, slots=True)
class Window:
    """A time range of one source to catch up from its provider's API (relay.catchup): a
    downtime found at start, the periodic re-check, or an operator's request."""

    source: str
    since: float
    until: float
    reason: str  # 'downtime', 'interval' or 'manual'
    id: int | None = None  # its catch_ups row, once recorded
    tries: int = 0
    error: str | None = None  # why the last try failed


@dataclass(frozen=True, slots=True)
class Tally:
    """What a catch-up run found: objects the provider listed, events it stored (pulled),
    ones relay had already, redeliveries it asked for (pushed)."""

    fetched: int = 0
    new: int = 0
    known: int = 0
    requested: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.fetched + other.fetched,
            self.new + other.new,
            self.known + other.known,
            self.requested + other.requested,
        )


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """An incident as the store keeps it (relay.incidents decides it; schema.md says each
    column): ``counts`` and ``samples`` are JSON."""

    subject: str
    kind: str
    status: str  # open | resolved
    since: float
    last_failure: float
    failures: int
    dominant: str
    counts: str
    samples: str
    resolved_at: float | None = None
    left_to_replay: int | None = None
    id: int | None = None
