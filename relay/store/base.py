"""The storage contract: every operation relay asks of a database, and what each means.

A store keeps events, their deliveries and attempts, rejections and paused destinations.
The rest of relay calls these operations and gets records back (``relay.records``);
no module outside ``relay.store`` holds a SQL statement. SQLite (``relay.store.sqlite``) is
the first implementation; ``tests/store/`` is the contract suite every implementation must
pass, parametrised by backend; PostgreSQL (``relay.store.postgresql``) is the second,
for several relays on one database.

Two sides:

``Store``, owned by the running relay: the hot paths (ingest, claim, record) and the
changes an operator asks for (replay, pause, prune). Writes are durable when their call
returns; an ``ingest`` that returns has committed its event.

``Reader``, a read-only view for people: the CLI opens one on the database file whether or
not relay runs, and the admin API and console run one per request in a thread
(``Store.read``), so a slow search never holds up ingest or delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from relay import rows
from relay.records import (
    Action,
    AttemptRecord,
    Claim,
    DeadFilter,
    EventFilter,
    EventPayload,
    Gauges,
    IncidentRecord,
    Limits,
    NewEvent,
    Rejection,
    ReplaySelection,
    ReplayTarget,
    Stored,
    Tally,
    Window,
)

T = TypeVar("T")


class HandOff(Protocol):
    """The scheduler's side of handing deliveries over at commit: an idle lane takes the
    deliveries of a batch as they are stored, already leased, saving a claim each."""

    def offer(self, wanted: Mapping[str, int]) -> dict[str, tuple[int, float]]:
        """Slots idle lanes reserve for this many new deliveries each: {name: (count,
        lease seconds)}."""
        ...

    def take(self, leased: Mapping[str, list[Claim]], payloads: Mapping[str, EventPayload]) -> None:
        """The outcome of the last offer: the deliveries stored leased (perhaps none: the
        transaction failed, or the events were duplicates); unused slots are freed."""
        ...


class Reader(Protocol):
    """Reads for people. Every list is bounded (``records.MAX_LIMIT``) and paged by keyset."""

    def events(self, f: EventFilter) -> list[rows.EventRow]:
        """Events matching ``f``, newest first: id, source, received_at, event_type,
        idempotency_key, body_bytes and {destination: state} of their deliveries."""
        ...

    def event(self, event_id: str) -> rows.Event | None:
        """One event with its headers (secret ones redacted), body, and every delivery
        with its attempts; None if there is no such event."""
        ...

    def events_after(self, after: int, source: str | None, limit: int) -> list[rows.TailRow]:
        """Events committed after ``position`` ``after``, in commit order (``relay tail``);
        each has its ``position``."""
        ...

    def latest_position(self) -> int:
        """The position of the last event committed (0: none yet)."""
        ...

    def dead(self, f: DeadFilter, limit: int = 50) -> list[rows.DeadRow]:
        """Dead deliveries matching ``f``, newest first."""
        ...

    def count_dead(self, f: DeadFilter) -> int: ...

    def dead_by_destination(self, f: DeadFilter) -> dict[str, int]:
        """How many dead deliveries match ``f``, per destination."""
        ...

    def dead_grouped(self, f: DeadFilter, by: str, limit: int = 100) -> list[rows.DeadGroup]:
        """Dead letters matching ``f`` counted per ``by`` (destination, error, type or
        source): value, count, last_died_at; the largest group first."""
        ...

    def dead_outcomes(self, f: DeadFilter, limit: int = 1000) -> list[rows.DeadOutcome]:
        """Dead letters matching ``f`` counted per last status and last error: status,
        error, count, last_died_at; the largest first."""
        ...

    def dead_groups(self, limit: int = 100) -> list[rows.DeadSet]:
        """Dead deliveries not yet replayed, grouped by destination and last error, largest
        group first: destination, error, count."""
        ...

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Per source: events and rejections in the last hour; per destination: pending,
        dead (not replayed), delivered in the last hour, oldest pending, paused."""
        ...

    def rejections(
        self,
        source: str | None = None,
        limit: int = 50,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
    ) -> list[rows.RejectionRow]:
        """The newest refused requests (headers redacted when they were stored), of a
        source, from ``since`` until ``until``, with an id below ``before`` (the next page)."""
        ...

    def minutes(self, now: float | None = None) -> list[tuple[int, str, str, str, int]]:
        """The per-minute rollup's rows of the overview's window (relay.store.rollup)."""
        ...

    def totals(self, since: float, until: float) -> dict[tuple[str, str], dict[str, int]]:
        """The per-minute rollup's counts from ``since`` until ``until``, per (kind, name)."""
        ...

    def backlog(self) -> dict[str, tuple[int, float, int]]:
        """Per destination: pending count, when the oldest pending was queued, dead (not
        replayed) count; each from an index."""
        ...

    def replay_targets(self, sel: ReplaySelection) -> list[ReplayTarget]:
        """The deliveries a replay selection would make (see ReplaySelection); a target
        whose destination is None is an event that went nowhere, for the routes to place."""
        ...

    def routing(self, event_ids: list[str]) -> dict[str, tuple[str | None, str, bytes]]:
        """Per event: its type, headers (JSON) and body, for routes and ordering keys."""
        ...

    def audit(
        self,
        since: float | None = None,
        limit: int = 50,
        until: float | None = None,
        before: int | None = None,
        action: str | None = None,
    ) -> list[rows.AuditRow]:
        """Operator actions, newest first (an id below ``before``: the next page)."""
        ...

    def dead_summary(self, f: DeadFilter) -> tuple[int, float | None]:
        """How many dead deliveries match, and when the last of them died."""
        ...

    def event_ids_starting(self, prefix: str) -> list[str]:
        """Up to two event ids that start with ``prefix`` (one: it names an event)."""
        ...

    def last_received(self, sources: list[str]) -> dict[str, float]:
        """When each of these sources last received an event (absent: never)."""
        ...

    def backup(self, target: Path) -> int:
        """A consistent copy of the whole database at ``target``; its size in bytes."""
        ...

    def incidents(
        self, status: str | None = None, limit: int = 50, before: int | None = None
    ) -> list[rows.IncidentRow]:
        """Incidents, newest first: the open ones or the resolved ones (``status``), an id
        below ``before`` (the next page)."""
        ...

    def known_keys(self, source: str, keys: list[str]) -> set[str]:
        """Which of these idempotency keys the source has an event for."""
        ...


class Store(Protocol):
    """The running relay's database. See the module docstring."""

    released: int  # leases of an earlier process released when it was opened
    hand_off: HandOff | None  # set by the app: who takes deliveries at commit
    shared: bool  # other relays may use this database at the same time (PostgreSQL)
    clock_offset: float  # the database's clock minus this host's: the scheduler's time
    housekeeping: bool  # this relay runs retention and alert checks (one of a cluster does)

    def start(self) -> None:
        """Begin taking writes (the writer's loop)."""
        ...

    async def close(self) -> None:
        """Commit what is queued, then close; the store may be opened again after."""
        ...

    @property
    def healthy(self) -> bool:
        """Whether commits complete, as far as the store knows without trying."""
        ...

    async def check(self, wait: float) -> str | None:
        """Try a commit and wait up to ``wait`` seconds: None if it worked, else why not."""
        ...

    def add_listener(self, listener: Callable[[set[str]], None]) -> None:
        """Called after each commit with the destinations that got new deliveries to claim
        (``{"*"}``: perhaps any of them), this relay's commits or, on a shared database,
        other relays'."""
        ...

    def add_control_listener(self, listener: Callable[[], None]) -> None:
        """Called when another relay may have paused, resumed or tripped a destination
        (only on a shared database): read ``paused_destinations`` and ``circuits`` again."""
        ...

    # -- the hot paths -----------------------------------------------------------------------

    async def ingest(self, event: NewEvent) -> Stored:
        """Store an event and one pending delivery per destination, atomically; return once
        committed. A duplicate (same source and idempotency key) stores nothing and names
        the original. StorageUnavailable if it could not be committed. An event's id starts
        with the millisecond of its ``received_at`` (``relay.ids``; within a minute for a
        split item): time-range lists rely on it."""
        ...

    def note_rejection(self, rejection: Rejection) -> None:
        """Keep a refused request (bounded; nobody waits for it)."""
        ...

    async def claim(
        self, destination: str, now: float, limit: int, lease: float, limits: Limits | None = None
    ) -> list[Claim]:
        """Lease up to ``limit`` due deliveries of a destination for ``lease`` seconds,
        oldest due first; an ordered delivery waits while an earlier one of its key is
        pending; an expired lease is taken again (at least once). On a shared database,
        within ``limits`` for the whole cluster (its leases and its token bucket)."""
        ...

    def held(self, destination: str) -> float | None:
        """When the last claim came back short because of the cluster's limits: the time
        to claim again (None: it was not held back)."""
        ...

    async def record(self, record: AttemptRecord) -> None:
        """Store an attempt and its delivery's new state; the lease ends. Only under the
        lease it was claimed with (``record.lease``, the fencing id; with ``strict``, only
        while that lease lasts): a result for a lease that was re-issued changes nothing."""
        ...

    async def release(self, claim: Claim, now: float) -> None:
        """End a lease whose attempt never got to the receiver (its agent went away): the
        attempt is not counted, and the delivery is due again."""
        ...

    async def next_due(self, destination: str) -> float | None:
        """When the destination next has work (a retry, or a lease that ends)."""
        ...

    async def load_events(self, event_ids: list[str]) -> dict[str, EventPayload]:
        """What deliveries of these events send; missing ids are absent from the result."""
        ...

    async def pending_count(self, destination: str) -> int: ...

    # -- operators' changes ------------------------------------------------------------------

    async def paused_destinations(self) -> dict[str, str | None]:
        """Destinations paused in the database, with why."""
        ...

    async def set_paused(self, destination: str, paused: bool, reason: str | None) -> None: ...

    async def circuits(self) -> dict[str, tuple[str, float | None, float | None]]:
        """Circuit states other relays shared: {destination: (state, opened_at,
        failing_since)}; empty when no other relay can share one."""
        ...

    async def set_circuit(
        self, destination: str, state: str, opened_at: float | None, failing_since: float | None
    ) -> None:
        """Share a circuit's new state with the other relays (nothing to do alone)."""
        ...

    async def replay(
        self,
        targets: list[ReplayTarget],
        action: Action,
        again: bool,
        now: float,
        summary: Mapping[str, object] | None = None,
    ) -> tuple[dict[str, object], bool]:
        """Make the deliveries ``targets`` name (each pending, pointing back at the delivery
        it repeats, which stays as history) and record ``action`` in the audit trail, in one
        transaction. Unless ``again``, a target that repeats a dead delivery some replay
        already repeats is skipped (two requests, two tabs, or a filter after a replay by
        hand, never double a dead delivery); delivered ones are sent again as asked.
        If ``action.request_id`` was seen before for the same request (the same
        ``action.params``), nothing is made and the first answer is returned; for another
        request, KeyReused. Returns (the answer: ``summary`` with replayed, events,
        destinations; repeated)."""
        ...

    async def audit(self, action: Action, result: dict[str, object], now: float) -> None:
        """Append an operator action to the audit trail (it is never changed after)."""
        ...

    async def prune(self, kind: str, before: float, limit: int, now: float) -> int:
        """One bounded batch of retention; ``kind``: 'delivered' (events delivered
        everywhere or routed nowhere), 'dead' (with a dead delivery and none pending),
        'rejections', 'audit', 'redacted' (empty the bodies of delivered events). Events go
        with their deliveries and attempts. Returns the rows changed."""
        ...

    async def gauges(self) -> Gauges: ...

    # -- catch-up (relay.catchup) ------------------------------------------------------------

    async def save_incident(self, incident: IncidentRecord) -> int:
        """Record an incident (no id: a new one) or its new state; its id."""
        ...

    async def beat(self, node: str, started: float, now: float) -> None:
        """This relay (``node``, running since ``started``) is alive at ``now``; beats
        older than 40 days are forgotten."""
        ...

    async def last_beat(self) -> float | None:
        """When any relay on this database was last alive (None: never recorded)."""
        ...

    async def open_window(self, window: Window, now: float) -> int | None:
        """Record a window to catch up; its id, or None for a downtime window of the same
        source and start recorded already (another relay found the same outage)."""
        ...

    async def open_windows(self) -> list[Window]:
        """The windows still to catch up (new, interrupted, or failed and to be tried
        again), oldest first."""
        ...

    async def tried_window(self, window_id: int) -> None:
        """A run of the window begins (its tries count up, before anything is fetched)."""
        ...

    async def close_window(
        self, window_id: int, state: str, tally: Tally, error: str | None, now: float
    ) -> None:
        """The window's outcome: 'done', 'failed' (given up), or 'open' with the error of a
        try that will be repeated."""
        ...

    def size(self) -> tuple[int, int]:
        """Bytes on disk: (database, write-ahead log)."""
        ...

    async def read(self, work: Callable[[Reader], T]) -> T:
        """Run ``work`` on a fresh Reader in a thread."""
        ...
