"""What the reader's lists and pages hold, row by row (``relay.store.base.Reader``): typed,
so the API, the console's templates and the CLI read the same names the reader writes, and
mypy says when one of them asks for a field no row has. Plain dicts at run time (JSON as is).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class EventRow(TypedDict):
    """An event in a list (``Reader.events``)."""

    id: str
    source: str
    received_at: float
    event_type: str | None
    idempotency_key: str | None
    body_bytes: int
    deliveries: dict[str, str]  # destination: state
    items: int  # a split request: how many events its items became


class Attempt(TypedDict):
    number: int
    started_at: float
    duration_ms: float
    status: int | None
    error: str | None
    response_excerpt: str | None
    outcome: str
    response_headers: list[list[str]] | None


class Delivery(TypedDict):
    id: int
    destination: str
    state: str
    attempts: int
    next_attempt_at: float
    created_at: float
    delivered_at: float | None
    last_status: int | None
    last_error: str | None
    replay_of: int | None
    history: list[Attempt]
    request: NotRequired[Any]  # the console's "as sent" (admin.console.outgoing.Shown)


class Item(TypedDict):
    id: str
    event_type: str | None
    key: str | None


class Normalized(TypedDict):
    parent_id: str | None
    provider: str | None
    channel: str | None
    provider_type: str | None
    subject: str | None
    contact: str | None
    conversation: str | None
    stale: bool


class Event(TypedDict):
    """One event, whole (``Reader.event``): its request, its deliveries and attempts."""

    id: str
    source: str
    received_at: float
    occurred_at: float | None
    event_type: str | None
    idempotency_key: str | None
    content_type: str | None
    remote_addr: str | None
    headers: list[list[str]]
    redacted_at: float | None
    origin: str | None
    encoding: str  # json | text | base64
    body: Any
    raw: NotRequired[str]  # json: the text as received
    normalized: NotRequired[Normalized]
    items: NotRequired[list[Item]]
    deliveries: list[Delivery]


class TailRow(TypedDict):
    """An event in commit order (``Reader.events_after``)."""

    position: int
    id: str
    received_at: float
    source: str
    event_type: str | None
    idempotency_key: str | None


class DeadRow(TypedDict):
    delivery_id: int
    event_id: str
    source: str
    event_type: str | None
    destination: str
    attempts: int
    last_status: int | None
    last_error: str | None
    died_at: float


class DeadGroup(TypedDict):
    """Dead letters counted by one field (``Reader.dead_grouped``)."""

    value: str | None
    count: int
    last_died_at: float | None
    link: NotRequired[str]  # the console's list of that group


class DeadOutcome(TypedDict):
    """Dead letters counted by how their last attempt ended (``Reader.dead_outcomes``)."""

    status: int | None
    error: str | None
    count: int
    last_died_at: float | None


class DeadSet(TypedDict):
    """Dead letters counted by destination and error (``Reader.dead_groups``)."""

    destination: str
    error: str | None
    count: int
    last_died_at: float | None


class RejectionRow(TypedDict):
    id: int
    at: float
    source: str
    status: int
    reason: str
    remote_addr: str | None
    method: str
    headers: list[list[str]]


class AuditRow(TypedDict):
    id: int
    at: float
    actor: str
    origin: str | None
    action: str
    target: str | None
    params: dict[str, Any]
    result: dict[str, Any]


class IncidentRow(TypedDict):
    """An incident (``Reader.incidents``); counts and samples read from their JSON."""

    id: int
    subject: str
    kind: str
    status: str
    since: float
    last_failure: float
    resolved_at: float | None
    failures: int
    dominant: str
    counts: dict[str, int]
    samples: dict[str, dict[str, Any]]
    left_to_replay: int | None
