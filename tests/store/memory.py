"""A store in memory: relay.store.base's Store and Reader over Python dicts, for tests that
want a Lane or a Batcher without a database (as procrastinate's in-memory connector and
huey's memory storage serve their tests).

It is not a third backend: it runs the real Batcher (group commit, faults, the hand-off),
the real verbs (replay, audit, prune: relay.store.verbs, whose named statements are
interpreted here) and the rules the backends share (relay.store.batch: duplicates of split
batches, statuses, the rollup's tally). The contract suite (tests/store/) runs on it beside
SQLite and PostgreSQL: that is what says it means what they mean.

A transaction is all or nothing: the tables are copied before it and put back if it fails.
A store opened again on the same path finds its tables, as a file would be found.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote_plus

from relay import rows
from relay.errors import StorageError
from relay.records import (
    Action,
    AttemptRecord,
    Claim,
    DeadFilter,
    EventFilter,
    EventPayload,
    Facts,
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
from relay.sections import StorageConfig
from relay.store import clauses, rollup, verbs
from relay.store.base import HandOff, Reader
from relay.store.batch import (
    BEATS_KEPT,
    Batcher,
    Inserted,
    Kind,
    Op,
    decide_statuses,
    delivery_rows,
    flatten,
    forgotten,
    stored_result,
    tracked,
)
from relay.verify.base import redacted

T = TypeVar("T")


class MemoryFault(Exception):
    """A fault of the store as a whole (a test's full disk): every op of the batch fails."""


class MemoryLock(MemoryFault):
    """A lock held by another process (SQLite's SQLITE_BUSY): over once a commit goes by."""


@dataclass
class Ev:
    id: str
    source: str
    received_at: float
    idempotency_key: str | None
    event_type: str | None
    content_type: str | None
    remote_addr: str | None
    headers: str
    body: bytes
    occurred_at: float | None
    facts: Facts | None
    stale: int | None
    origin: str | None
    rowid: int
    redacted_at: float | None = None
    contact: str | None = None


@dataclass
class Dl:
    id: int
    event_id: str
    destination: str
    next_attempt_at: float
    created_at: float
    updated_at: float
    ordering_key: str | None
    state: str = "pending"
    attempts: int = 0
    lease_until: float | None = None
    lease_seq: int = 0
    delivered_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    replay_of: int | None = None


@dataclass
class Tables:
    events: dict[str, Ev] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (source, key): id
    deliveries: dict[int, Dl] = field(default_factory=dict)
    attempts: list[tuple[int, rows.Attempt]] = field(default_factory=list)  # delivery, row
    rejections: list[rows.RejectionRow] = field(default_factory=list)
    paused: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    minutes: dict[tuple[int, str, str, str], int] = field(default_factory=dict)
    statuses: dict[tuple[str, str], int] = field(default_factory=dict)
    beats: dict[str, float] = field(default_factory=dict)
    windows: dict[int, dict[str, Any]] = field(default_factory=dict)
    incidents: dict[int, dict[str, Any]] = field(default_factory=dict)
    serial: dict[str, int] = field(default_factory=dict)  # the next id of each table

    def next(self, table: str) -> int:
        self.serial[table] = self.serial.get(table, 0) + 1
        return self.serial[table]


DATABASES: dict[str, Tables] = {}  # by path: a store opened again finds its tables


# -- matching, as the SQL does ---------------------------------------------------------------


def _glob(pattern: str, value: str | None) -> bool:
    return value is not None and re.match(clauses.glob_to_regex(pattern), value) is not None


def _type(given: str | None, value: str | None) -> bool:
    return not given or _glob(clauses.type_glob(given), value)


def _contains(body: bytes, text: str) -> bool:
    """clauses' body_contains: as given, in any case (ASCII, as SQLite's lower()), or
    form-encoded."""
    lowered = body.lower()
    return (
        text.encode() in body
        or text.encode().lower() in lowered
        or quote_plus(text).encode().lower() in lowered
    )


def _unrouted(t: Tables, e: Ev) -> bool:
    has_delivery = any(d.event_id == e.id for d in t.deliveries.values())
    has_items = any(i.facts is not None and i.facts.parent_id == e.id for i in t.events.values())
    return not has_delivery and not has_items


def _replayed(t: Tables, d: Dl) -> bool:
    return any(r.replay_of == d.id for r in t.deliveries.values())


def _blocked(t: Tables, d: Dl) -> bool:
    """An ordered delivery behind an earlier pending one of its key."""
    return d.ordering_key is not None and any(
        p.destination == d.destination
        and p.state == "pending"
        and p.ordering_key == d.ordering_key
        and p.id < d.id
        for p in t.deliveries.values()
    )


def _event_matches(
    e: Ev, source: str | None, kind: str | None, key: str | None, text: str | None
) -> bool:
    return (
        (not source or e.source == source)
        and _type(kind, e.event_type)
        and (not key or e.idempotency_key == key)
        and (not text or _contains(e.body, text))
    )


# -- the reader -----------------------------------------------------------------------------


class MemoryReader:
    """relay.store.base.Reader over the tables."""

    def __init__(self, tables: Tables) -> None:
        self.t = tables

    def known_keys(self, source: str, keys: list[str]) -> set[str]:
        return {k for k in keys if (source, k) in self.t.keys}

    def events(self, f: EventFilter) -> list[rows.EventRow]:
        t = self.t
        found = []
        for e in sorted(t.events.values(), key=lambda e: e.id, reverse=True):
            if not _event_matches(e, f.source, f.event_type, f.key, f.text):
                continue
            if f.since is not None and e.received_at < f.since:
                continue
            if f.until is not None and e.received_at >= f.until:
                continue
            if f.before and not e.id < f.before:
                continue
            mine = [d for d in t.deliveries.values() if d.event_id == e.id]
            if f.status == "unrouted":
                if not _unrouted(t, e):
                    continue
            elif f.destination and f.status:
                if not any(d.destination == f.destination and d.state == f.status for d in mine):
                    continue
            elif f.destination:
                if not any(d.destination == f.destination for d in mine):
                    continue
            elif f.status and not any(d.state == f.status for d in mine):
                continue
            items = sum(
                1 for i in t.events.values() if i.facts is not None and i.facts.parent_id == e.id
            )
            found.append(
                rows.EventRow(
                    id=e.id,
                    source=e.source,
                    received_at=e.received_at,
                    event_type=e.event_type,
                    idempotency_key=e.idempotency_key,
                    body_bytes=len(e.body),
                    deliveries={d.destination: d.state for d in sorted(mine, key=lambda d: d.id)},
                    items=0 if mine else items,
                )
            )
            if len(found) >= max(1, min(f.limit, 1000)):
                break
        return found

    def event_ids_starting(self, prefix: str) -> list[str]:
        return sorted(i for i in self.t.events if i.startswith(prefix))[:2]

    def event(self, event_id: str) -> rows.Event | None:
        t = self.t
        e = t.events.get(event_id)
        if e is None:
            return None
        encoding, body, raw = _body(e.body)
        deliveries = sorted(
            (d for d in t.deliveries.values() if d.event_id == event_id), key=lambda d: d.id
        )
        event = rows.Event(
            id=e.id,
            source=e.source,
            received_at=e.received_at,
            occurred_at=e.occurred_at,
            event_type=e.event_type,
            idempotency_key=e.idempotency_key,
            content_type=e.content_type,
            remote_addr=e.remote_addr,
            headers=redacted((name, value) for name, value in json.loads(e.headers)),
            redacted_at=e.redacted_at,
            origin=e.origin,
            encoding=encoding,
            body=body,
            deliveries=[
                rows.Delivery(
                    id=d.id,
                    destination=d.destination,
                    state=d.state,
                    attempts=d.attempts,
                    next_attempt_at=d.next_attempt_at,
                    created_at=d.created_at,
                    delivered_at=d.delivered_at,
                    last_status=d.last_status,
                    last_error=d.last_error,
                    replay_of=d.replay_of,
                    history=[dict(a) for i, a in t.attempts if i == d.id],  # type: ignore[misc]
                )
                for d in deliveries
            ],
        )
        if raw is not None:
            event["raw"] = raw
        f = e.facts
        if f is not None and any(
            v is not None
            for v in (
                f.parent_id,
                f.provider,
                f.channel,
                f.provider_type,
                f.subject,
                e.contact,
                f.conversation,
            )
        ):
            event["normalized"] = rows.Normalized(
                parent_id=f.parent_id,
                provider=f.provider,
                channel=f.channel,
                provider_type=f.provider_type,
                subject=f.subject,
                contact=e.contact,
                conversation=f.conversation,
                stale=bool(e.stale),
            )
        items = sorted(
            (i for i in t.events.values() if i.facts is not None and i.facts.parent_id == e.id),
            key=lambda i: (i.received_at, i.id),
        )
        if items:
            event["items"] = [
                rows.Item(id=i.id, event_type=i.event_type, key=i.idempotency_key) for i in items
            ]
        return event

    def events_after(self, after: int, source: str | None, limit: int) -> list[rows.TailRow]:
        found = sorted(
            (
                e
                for e in self.t.events.values()
                if e.rowid > after and (not source or e.source == source)
            ),
            key=lambda e: e.rowid,
        )
        return [
            rows.TailRow(
                position=e.rowid,
                id=e.id,
                received_at=e.received_at,
                source=e.source,
                event_type=e.event_type,
                idempotency_key=e.idempotency_key,
            )
            for e in found[:limit]
        ]

    def latest_position(self) -> int:
        return max((e.rowid for e in self.t.events.values()), default=0)

    def _dead(self, f: DeadFilter) -> list[tuple[Dl, Ev]]:
        t = self.t
        found = []
        for d in sorted(t.deliveries.values(), key=lambda d: d.id, reverse=True):
            e = t.events.get(d.event_id)
            if d.state != "dead" or e is None:
                continue
            if f.destination and d.destination != f.destination:
                continue
            if not _event_matches(e, f.source, f.event_type, f.key, f.text):
                continue
            if f.died_since is not None and d.updated_at < f.died_since:
                continue
            if f.died_until is not None and d.updated_at >= f.died_until:
                continue
            if f.event is not None and d.event_id != f.event:
                continue
            if f.before_id is not None and not d.id < f.before_id:
                continue
            if f.exact_error and d.last_error != f.error:
                continue
            if (
                not f.exact_error
                and f.error
                and (d.last_error is None or f.error not in d.last_error)
            ):
                continue
            if f.deliveries and d.id not in f.deliveries:
                continue
            if not f.include_replayed and _replayed(t, d):
                continue
            found.append((d, e))
        return found

    def dead(self, f: DeadFilter, limit: int = 50) -> list[rows.DeadRow]:
        return [
            rows.DeadRow(
                delivery_id=d.id,
                event_id=d.event_id,
                source=e.source,
                event_type=e.event_type,
                destination=d.destination,
                attempts=d.attempts,
                last_status=d.last_status,
                last_error=d.last_error,
                died_at=d.updated_at,
            )
            for d, e in self._dead(f)[: max(1, min(limit, 1000))]
        ]

    def count_dead(self, f: DeadFilter) -> int:
        return len(self._dead(f))

    def dead_summary(self, f: DeadFilter) -> tuple[int, float | None]:
        found = self._dead(f)
        return len(found), max((d.updated_at for d, _ in found), default=None)

    def dead_by_destination(self, f: DeadFilter) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d, _ in self._dead(f):
            counts[d.destination] = counts.get(d.destination, 0) + 1
        return counts

    def dead_grouped(self, f: DeadFilter, by: str, limit: int = 100) -> list[rows.DeadGroup]:
        column: Callable[[Dl, Ev], str | None] = {
            "destination": lambda d, e: d.destination,
            "error": lambda d, e: d.last_error,
            "type": lambda d, e: e.event_type,
            "source": lambda d, e: e.source,
        }[by]
        groups: dict[str | None, list[float]] = {}
        for d, e in self._dead(f):
            groups.setdefault(column(d, e), []).append(d.updated_at)
        ordered = sorted(groups.items(), key=lambda g: -len(g[1]))
        return [
            rows.DeadGroup(value=value, count=len(times), last_died_at=max(times))
            for value, times in ordered[:limit]
        ]

    def dead_outcomes(self, f: DeadFilter, limit: int = 1000) -> list[rows.DeadOutcome]:
        groups: dict[tuple[int | None, str | None], list[float]] = {}
        for d, _ in self._dead(f):
            groups.setdefault((d.last_status, d.last_error), []).append(d.updated_at)
        ordered = sorted(groups.items(), key=lambda g: -len(g[1]))
        return [
            rows.DeadOutcome(status=k[0], error=k[1], count=len(v), last_died_at=max(v))
            for k, v in ordered[:limit]
        ]

    def dead_groups(self, limit: int = 100) -> list[rows.DeadSet]:
        groups: dict[tuple[str, str | None], list[float]] = {}
        for d, _ in self._dead(DeadFilter()):
            groups.setdefault((d.destination, d.last_error), []).append(d.updated_at)
        ordered = sorted(groups.items(), key=lambda g: -len(g[1]))
        return [
            rows.DeadSet(destination=k[0], error=k[1], count=len(v), last_died_at=max(v))
            for k, v in ordered[:limit]
        ]

    def stats(self, now: float | None = None) -> dict[str, Any]:
        t = self.t
        now = now if now is not None else time.time()
        hour = now - 3600
        sources: dict[str, dict[str, Any]] = {}
        for e in t.events.values():
            if e.received_at >= hour:
                entry = sources.setdefault(e.source, {"events_last_hour": 0})
                entry["events_last_hour"] += 1
        for r in t.rejections:
            if r["at"] >= hour:
                entry = sources.setdefault(r["source"], {"events_last_hour": 0})
                entry["rejected_last_hour"] = entry.get("rejected_last_hour", 0) + 1
        destinations: dict[str, dict[str, Any]] = {}

        def entry_of(name: str) -> dict[str, Any]:
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

        for name, (pending, oldest, dead) in self.backlog().items():
            waited = int(now - oldest) if pending else None
            entry_of(name).update(pending=pending, dead=dead, oldest_pending_seconds=waited)
        for d in t.deliveries.values():
            if d.state == "delivered":
                entry_of(d.destination)["delivered_last_hour"] += d.updated_at >= hour
        for name, (paused, _) in t.paused.items():
            if paused or name in destinations:
                entry_of(name)["paused"] = paused
        return {"at": now, "sources": sources, "destinations": dict(sorted(destinations.items()))}

    def rejections(
        self,
        source: str | None = None,
        limit: int = 50,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
    ) -> list[rows.RejectionRow]:
        found = [
            r
            for r in reversed(self.t.rejections)
            if (not source or r["source"] == source)
            and (since is None or r["at"] >= since)
            and (until is None or r["at"] < until)
            and (before is None or r["id"] < before)
        ]
        return [copy.deepcopy(r) for r in found[:limit]]

    def minutes(self, now: float | None = None) -> list[tuple[int, str, str, str, int]]:
        now = now if now is not None else time.time()
        since = rollup.minute_of(now) - rollup.WINDOW + 1
        return [(*key, n) for key, n in self.t.minutes.items() if key[0] >= since]

    def totals(self, since: float, until: float) -> dict[tuple[str, str], dict[str, int]]:
        first, end = rollup.minute_of(since), rollup.minute_of(until - 1e-9) + 1
        found: dict[tuple[str, str], dict[str, int]] = {}
        for (minute, kind, name, metric), n in self.t.minutes.items():
            if first <= minute < end:
                counts = found.setdefault((kind, name), {})
                counts[metric] = counts.get(metric, 0) + n
        return found

    def backlog(self) -> dict[str, tuple[int, float, int]]:
        found: dict[str, tuple[int, float, int]] = {}
        for d in self.t.deliveries.values():
            if d.state == "pending":
                count, oldest, _ = found.get(d.destination, (0, d.created_at, 0))
                found[d.destination] = (count + 1, min(oldest, d.created_at), 0)
        for d, _ in self._dead(DeadFilter()):
            pending, oldest, dead = found.get(d.destination, (0, 0.0, 0))
            found[d.destination] = (pending, oldest, dead + 1)
        return found

    def replay_targets(self, sel: ReplaySelection) -> list[ReplayTarget]:
        t = self.t

        def chosen(e: Ev) -> bool:
            return (
                (sel.event is None or e.id == sel.event)
                and _event_matches(e, sel.source, sel.event_type, sel.key, sel.text)
                and (sel.since is None or e.received_at >= sel.since)
                and (sel.until is None or e.received_at < sel.until)
            )

        def target(d: Dl, e: Ev) -> ReplayTarget:
            return ReplayTarget(e.id, e.source, d.destination, d.id, d.ordering_key)

        unrouted = [
            ReplayTarget(e.id, e.source, None, None, None)
            for e in t.events.values()
            if chosen(e) and _unrouted(t, e)
        ]
        by_id = sorted(t.deliveries.values(), key=lambda d: d.id)
        if sel.delivery is not None:
            d = t.deliveries.get(sel.delivery)
            e = t.events.get(d.event_id) if d is not None else None
            return [target(d, e)] if d is not None and e is not None and chosen(e) else []
        if sel.event is not None or sel.state == "any":
            latest: dict[tuple[str, str], ReplayTarget] = {}
            for d in by_id:
                e = t.events[d.event_id]
                if chosen(e):
                    latest[(e.id, d.destination)] = target(d, e)
            return [*latest.values(), *unrouted]
        if sel.state == "unrouted":
            return unrouted
        found: dict[tuple[str, str | None], ReplayTarget] = {}
        for d in by_id:
            e = t.events[d.event_id]
            if d.state != sel.state or not chosen(e):
                continue
            if sel.destination and d.destination != sel.destination:
                continue
            if sel.state == "dead":
                if not sel.again and _replayed(t, d):
                    continue
                if sel.deliveries and d.id not in sel.deliveries:
                    continue
                if sel.exact_error and d.last_error != sel.error:
                    continue
                if (
                    not sel.exact_error
                    and sel.error
                    and (d.last_error is None or sel.error not in d.last_error)
                ):
                    continue
                if sel.died_before is not None and not d.updated_at <= sel.died_before:
                    continue
                if sel.died_since is not None and not d.updated_at >= sel.died_since:
                    continue
                if sel.died_until is not None and not d.updated_at < sel.died_until:
                    continue
            found[(e.id, d.destination)] = target(d, e)  # the latest of each, by id
        return list(found.values())

    def routing(self, event_ids: list[str]) -> dict[str, tuple[str | None, str, bytes]]:
        t = self.t
        return {
            i: (t.events[i].event_type, t.events[i].headers, t.events[i].body)
            for i in event_ids
            if i in t.events
        }

    def last_received(self, sources: list[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for e in self.t.events.values():
            if e.source in sources:
                found[e.source] = max(found.get(e.source, e.received_at), e.received_at)
        return found

    def audit(
        self,
        since: float | None = None,
        limit: int = 50,
        until: float | None = None,
        before: int | None = None,
        action: str | None = None,
    ) -> list[rows.AuditRow]:
        found = [
            a
            for a in reversed(self.t.audit)
            if (since is None or a["at"] >= since)
            and (until is None or a["at"] < until)
            and (before is None or a["id"] < before)
            and (action is None or a["action"] == action)
        ]
        return [
            rows.AuditRow(
                id=a["id"],
                at=a["at"],
                actor=a["actor"],
                origin=a["origin"],
                action=a["action"],
                target=a["target"],
                params=json.loads(a["params"]),
                result=json.loads(a["result"]),
            )
            for a in found[:limit]
        ]

    def incidents(
        self, status: str | None = None, limit: int = 50, before: int | None = None
    ) -> list[rows.IncidentRow]:
        found = [
            row
            for i, row in sorted(self.t.incidents.items(), reverse=True)
            if (status is None or row["status"] == status) and (before is None or i < before)
        ]
        return [
            rows.IncidentRow(
                id=r["id"],
                subject=r["subject"],
                kind=r["kind"],
                status=r["status"],
                since=r["since"],
                last_failure=r["last_failure"],
                resolved_at=r["resolved_at"],
                failures=r["failures"],
                dominant=r["dominant"],
                counts=json.loads(r["counts"]),
                samples=json.loads(r["samples"]),
                left_to_replay=r["left_to_replay"],
            )
            for r in found[:limit]
        ]

    def backup(self, target: Path) -> int:
        raise StorageError("a store in memory has no file to copy")


def _body(raw: bytes) -> tuple[str, Any, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(raw).decode(), None
    try:
        return "json", json.loads(text), text
    except ValueError:
        return "text", text, None


# -- the writer -----------------------------------------------------------------------------


class MemoryBatcher(Batcher):
    """The real Batcher, whose transaction applies its batch to the tables."""

    def __init__(
        self,
        tables: Tables,
        max_batch: int,
        keep_rejections: int,
        on_commit: Callable[[list[NewEvent], set[str]], None],
    ) -> None:
        super().__init__(max_batch, on_commit, keep_rejections)
        self.tables = tables
        self.keep = keep_rejections
        self.fail: Callable[[list[Op]], Exception | None] = lambda batch: None

    async def _transaction(self, batch: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
        await asyncio.sleep(0)  # a backend's hop to its thread or server
        problem = self.fail(batch)
        if problem is not None:
            raise problem
        saved = copy.deepcopy(self.tables)
        try:
            return self._apply(batch, offers)
        except BaseException:
            _restore(self.tables, saved)
            raise

    def _is_storage_fault(self, exc: BaseException) -> bool:
        return isinstance(exc, MemoryFault)

    def _is_lock(self, exc: BaseException) -> bool:
        return isinstance(exc, MemoryLock)

    def _apply(self, batch: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
        t = self.tables
        ingests = [op for op in batch if op.kind is Kind.INGEST]
        inserted = _insert_events(t, ingests, offers) if ingests else Inserted()
        finished: list[tuple[str, str, float, float]] = []
        for op in batch:
            if op.kind is Kind.RECORD:
                applied = _record(t, op.payload)
                if applied is not None:
                    finished.append(applied)
        for op in batch:
            if op.kind is Kind.CLAIM:
                op.result = _claim(t, op.payload)
            elif op.kind is Kind.CALL:
                op.result = op.payload(t)
        rejections = [op.payload for op in batch if op.kind is Kind.REJECT]
        for r in rejections:
            t.rejections.append(
                rows.RejectionRow(
                    id=t.next("rejections"),
                    at=r.at,
                    source=r.source,
                    status=r.status,
                    reason=r.reason,
                    remote_addr=r.remote_addr,
                    method=r.method,
                    headers=json.loads(r.headers),
                )
            )
        if rejections:
            newest = t.rejections[-1]["id"]
            t.rejections = [r for r in t.rejections if r["id"] > newest - self.keep]
        counts, trim = self.tally(inserted.events, finished, rejections)
        for minute, kind, name, metric, n in counts:
            key = (minute, kind, name, metric)
            t.minutes[key] = t.minutes.get(key, 0) + n
        if trim is not None:
            t.minutes = {k: n for k, n in t.minutes.items() if k[0] >= trim}
        return inserted


def _restore(tables: Tables, saved: Tables) -> None:
    for name in tables.__dataclass_fields__:
        setattr(tables, name, getattr(saved, name))


def _insert_events(t: Tables, ops: list[Op], offers: dict[str, tuple[int, float]]) -> Inserted:
    events: list[NewEvent] = [op.payload for op in ops]
    inserted: set[str] = set()
    for e in flatten(events):
        key = (e.source, e.idempotency_key) if e.idempotency_key is not None else None
        if e.id in t.events or (key is not None and key in t.keys):
            continue
        f = e.facts
        t.events[e.id] = Ev(
            id=e.id,
            source=e.source,
            received_at=e.received_at,
            idempotency_key=e.idempotency_key,
            event_type=e.event_type,
            content_type=e.content_type,
            remote_addr=e.remote_addr,
            headers=e.headers,
            body=e.body,
            occurred_at=e.occurred_at,
            facts=f,
            stale=0 if tracked(e) is not None else None,
            origin=e.origin,
            rowid=t.next("events"),
            contact=f.contact if f else None,
        )
        if key is not None:
            t.keys[key] = e.id
        inserted.add(e.id)
    for gone in forgotten(events, inserted):
        _delete_event(t, gone)
        inserted.discard(gone)
    moving = [(e, k) for e in flatten(events) if e.id in inserted and (k := tracked(e)) is not None]
    if moving:
        moved, stale = decide_statuses(moving, dict(t.statuses))
        for row in moved:
            t.statuses[(row["provider"], row["subject"])] = row["rank"]
        for (event_id,) in stale:
            t.events[event_id].stale = 1
    for op, event in zip(ops, events, strict=True):
        original = None
        if event.id not in inserted:
            first = event.items[0] if event.items else event
            assert first.idempotency_key is not None
            original = t.keys[(first.source, first.idempotency_key)]
        op.result = stored_result(event, inserted, original)
    stored = [e for e in flatten(events) if e.id in inserted]
    left = {name: count for name, (count, _) in offers.items()}
    leased: dict[str, list[Claim]] = {}
    woken: set[str] = set()
    for event in stored:
        for event_id, name, due, created, updated, ordering in delivery_rows(event):
            d = Dl(t.next("deliveries"), event_id, name, due, created, updated, ordering)
            t.deliveries[d.id] = d
            if left.get(name, 0) > 0:  # born leased, as if claimed (Batcher's hand-off)
                left[name] -= 1
                d.attempts, d.lease_until, d.lease_seq = 1, due + offers[name][1], 1
                leased.setdefault(name, []).append(Claim(d.id, event_id, 1, created, 1))
            else:
                woken.add(name)
    return Inserted(stored, leased, woken)


def _delete_event(t: Tables, event_id: str) -> None:
    e = t.events.pop(event_id)
    if e.idempotency_key is not None:
        t.keys.pop((e.source, e.idempotency_key), None)
    gone = {i for i, d in t.deliveries.items() if d.event_id == event_id}
    for i in gone:
        del t.deliveries[i]
    t.attempts = [(i, a) for i, a in t.attempts if i not in gone]


def _claim(t: Tables, p: Mapping[str, Any]) -> list[Claim]:
    now = p["now"]
    due = [
        d
        for d in t.deliveries.values()
        if d.destination == p["destination"]
        and d.state == "pending"
        and d.next_attempt_at <= now
        and (d.lease_until is None or d.lease_until < now)
        and not _blocked(t, d)
    ]
    due.sort(key=lambda d: (d.next_attempt_at, d.id))
    claims = []
    for d in due[: p["limit"]]:
        d.lease_until, d.attempts, d.updated_at = p["lease_until"], d.attempts + 1, now
        d.lease_seq += 1
        claims.append(Claim(d.id, d.event_id, d.attempts, d.created_at, d.lease_seq))
    return claims


def _record(t: Tables, r: AttemptRecord) -> tuple[str, str, float, float] | None:
    """An outcome under the delivery's current lease (and, strict, one not run out):
    kept and applied; else nothing. Returns what the rollup counts."""
    d = t.deliveries.get(r.delivery_id)
    now = r.finished_at
    if (
        d is None
        or d.lease_seq != r.lease
        or d.state != "pending"
        or d.lease_until is None
        or (r.strict and d.lease_until < now)
    ):
        return None
    t.attempts.append(
        (
            d.id,
            rows.Attempt(
                number=r.number,
                started_at=r.started_at,
                duration_ms=r.duration_ms,
                status=r.status,
                error=r.error,
                response_excerpt=r.response_excerpt,
                outcome=r.outcome,
                response_headers=json.loads(r.response_headers) if r.response_headers else None,
            ),
        )
    )
    d.state, d.next_attempt_at, d.lease_until, d.updated_at = r.state, r.next_attempt_at, None, now
    d.last_status, d.last_error = r.status, r.error
    if r.state == "delivered":
        d.delivered_at = now
    return d.destination, d.state, d.created_at, now


# -- the verbs' statements --------------------------------------------------------------------


def _step(t: Tables, step: verbs.Step) -> Any:
    """One named statement of relay.store.verbs, as the SQL in relay/sql says it."""
    p = step.params
    if step.query == "audit_answered":
        found = next((a for a in t.audit if a["request_id"] == p[0]), None)
        return None if found is None else (found["result"], found["params"])
    if step.query == "audit_insert":
        if p["request_id"] is not None and any(a["request_id"] == p["request_id"] for a in t.audit):
            return 0
        t.audit.append({"id": t.next("audit"), **p})
        return 1
    if step.query == "replay_delivery":
        original = t.deliveries.get(p["replay_of"]) if p["replay_of"] is not None else None
        allowed = (
            p["again"]
            or p["replay_of"] is None
            or not any(r.replay_of == p["replay_of"] for r in t.deliveries.values())
            or (original is not None and original.state != "dead")
        )
        if not allowed:
            return None
        now = p["now"]
        d = Dl(
            t.next("deliveries"), p["event_id"], p["destination"], now, now, now, p["ordering_key"]
        )
        d.replay_of = p["replay_of"]
        t.deliveries[d.id] = d
        return (d.id,)
    if step.query in ("incident_insert", "incident_update"):
        incident_id = p["id"] if p["id"] is not None else t.next("incidents")
        t.incidents[incident_id] = {**p, "id": incident_id}
        return (incident_id,)
    return _prune(t, step.query, p)


def _prune(t: Tables, query: str, p: Mapping[str, Any]) -> int:
    def states(e: Ev) -> list[str]:
        return [d.state for d in t.deliveries.values() if d.event_id == e.id]

    old = [
        e for e in sorted(t.events.values(), key=lambda e: e.rowid) if e.received_at < p["before"]
    ]
    if query == "prune_delivered":
        chosen = [e for e in old if all(s == "delivered" for s in states(e))][: p["batch"]]
    elif query == "prune_dead":
        chosen = [e for e in old if "dead" in states(e) and "pending" not in states(e)][
            : p["batch"]
        ]
    elif query == "redact_delivered":
        chosen = [
            e
            for e in old
            if e.redacted_at is None and states(e) and all(s == "delivered" for s in states(e))
        ][: p["batch"]]
        for e in chosen:
            e.body, e.contact, e.redacted_at = b"", None, p["now"]
        return len(chosen)
    elif query == "prune_rejections":
        gone = [r["id"] for r in t.rejections if r["at"] < p["before"]][: p["batch"]]
        t.rejections = [r for r in t.rejections if r["id"] not in gone]
        return len(gone)
    elif query == "prune_incidents":
        gone = [
            i
            for i, row in sorted(t.incidents.items())
            if row["status"] == "resolved" and row["resolved_at"] < p["before"]
        ][: p["batch"]]
        for i in gone:
            del t.incidents[i]
        return len(gone)
    elif query == "prune_audit":
        gone = [a["id"] for a in t.audit if a["at"] < p["before"]][: p["batch"]]
        t.audit = [a for a in t.audit if a["id"] not in gone]
        return len(gone)
    else:
        raise KeyError(query)
    for e in chosen:
        _delete_event(t, e.id)
    return len(chosen)


# -- the store ------------------------------------------------------------------------------


class MemoryStore:
    """relay.store.base.Store in memory (one relay per path, as SQLite)."""

    shared = False
    clock_offset = 0.0
    housekeeping = True

    def __init__(self, config: StorageConfig) -> None:
        key = str(config.path)
        self.released = 0
        if key in DATABASES:  # opened again: the last process's leases are stale
            tables = DATABASES[key]
            for d in tables.deliveries.values():
                if d.state == "pending" and d.lease_until is not None:
                    d.lease_until = None
                    self.released += 1
        else:
            tables = DATABASES[key] = Tables()
        self.tables = tables
        self._listeners: list[Callable[[set[str]], None]] = []
        self._writer = MemoryBatcher(
            tables, config.max_batch, config.keep_rejections, self._committed
        )
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, config: StorageConfig) -> MemoryStore:
        return cls(config)

    @property
    def hand_off(self) -> HandOff | None:
        return self._writer.hand_off

    @hand_off.setter
    def hand_off(self, value: HandOff | None) -> None:
        self._writer.hand_off = value

    @property
    def fail(self) -> Callable[[list[Op]], Exception | None]:
        return self._writer.fail

    @fail.setter
    def fail(self, value: Callable[[list[Op]], Exception | None]) -> None:
        self._writer.fail = value

    def start(self) -> None:
        self._task = asyncio.create_task(self._writer.run(), name="memory-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._writer.stop()
            await self._task
            self._task = None

    @property
    def healthy(self) -> bool:
        return self._writer.healthy and self._task is not None and not self._task.done()

    @property
    def last_error(self) -> str | None:
        return self._writer.last_error

    async def check(self, wait: float) -> str | None:
        if self._task is None or self._task.done():
            return "writer stopped"
        return await self._writer.check(wait)

    def add_listener(self, listener: Callable[[set[str]], None]) -> None:
        self._listeners.append(listener)

    def add_control_listener(self, listener: Callable[[], None]) -> None:
        """Nobody else changes these tables."""

    def _committed(self, events: list[NewEvent], woken: set[str]) -> None:
        if woken:
            for listener in self._listeners:
                listener(woken)

    async def ingest(self, event: NewEvent) -> Stored:
        return await self._writer.ingest(event)

    def note_rejection(self, rejection: Rejection) -> None:
        self._writer.note_rejection(rejection)

    @property
    def rejections_dropped(self) -> int:
        return self._writer.rejections_dropped

    async def claim(
        self, destination: str, now: float, limit: int, lease: float, limits: Limits | None = None
    ) -> list[Claim]:
        return await self._writer.claim(destination, now, limit, lease)

    def held(self, destination: str) -> float | None:
        return None

    async def record(self, record: AttemptRecord) -> None:
        await self._writer.record(record)

    async def release(self, claim: Claim, now: float) -> None:
        def work(t: Tables) -> int:
            d = t.deliveries.get(claim.id)
            if d is None or d.lease_seq != claim.lease or d.state != "pending":
                return 0
            d.lease_until, d.attempts, d.updated_at = None, max(0, d.attempts - 1), now
            return 1

        await self._writer.call(work)

    async def next_due(self, destination: str) -> float | None:
        t = self.tables
        due = [
            d.next_attempt_at if d.lease_until is None else max(d.next_attempt_at, d.lease_until)
            for d in t.deliveries.values()
            if d.destination == destination and d.state == "pending" and not _blocked(t, d)
        ]
        return min(due, default=None)

    async def pending_count(self, destination: str) -> int:
        return sum(
            1
            for d in self.tables.deliveries.values()
            if d.destination == destination and d.state == "pending"
        )

    async def load_events(self, event_ids: list[str]) -> dict[str, EventPayload]:
        found = {}
        for event_id in event_ids:
            e = self.tables.events.get(event_id)
            if e is None:
                continue
            f = e.facts or Facts()
            values = (
                f.parent_id,
                f.provider,
                f.channel,
                f.provider_type,
                f.subject,
                e.contact,
                f.conversation,
            )
            facts = Facts(*values) if any(v is not None for v in values) else None
            found[event_id] = EventPayload(
                e.id,
                e.source,
                e.content_type,
                e.headers,
                e.body,
                e.received_at,
                e.event_type,
                e.occurred_at,
                facts,
                bool(e.stale),
                e.origin,
            )
        return found

    async def paused_destinations(self) -> dict[str, str | None]:
        return {name: reason for name, (paused, reason) in self.tables.paused.items() if paused}

    async def set_paused(self, destination: str, paused: bool, reason: str | None) -> None:
        def work(t: Tables) -> int:
            t.paused[destination] = (paused, reason)
            return 1

        await self._writer.call(work)

    async def circuits(self) -> dict[str, tuple[str, float | None, float | None]]:
        return {}

    async def set_circuit(
        self, destination: str, state: str, opened_at: float | None, failing_since: float | None
    ) -> None:
        """Alone on its tables, a lane's circuit is the only one."""

    async def replay(
        self,
        targets: list[ReplayTarget],
        action: Action,
        again: bool,
        now: float,
        summary: Mapping[str, object] | None = None,
    ) -> tuple[dict[str, object], bool]:
        return await self._writer.call(
            lambda t: verbs.run(
                verbs.replay(verbs.Manners(), targets, action, again, now, summary),
                lambda step: _step(t, step),
            )
        )

    async def audit(self, action: Action, result: dict[str, object], now: float) -> None:
        await self._writer.call(
            lambda t: verbs.run(verbs.audit(action, result, now), lambda step: _step(t, step))
        )

    async def prune(self, kind: str, before: float, limit: int, now: float) -> int:
        return await self._writer.call(
            lambda t: verbs.run(verbs.prune(kind, before, limit, now), lambda step: _step(t, step))
        )

    async def save_incident(self, incident: IncidentRecord) -> int:
        return await self._writer.call(
            lambda t: verbs.run(verbs.save_incident(incident), lambda step: _step(t, step))
        )

    async def gauges(self) -> Gauges:
        backlog = MemoryReader(self.tables).backlog()
        return Gauges(
            {name: (p, oldest) for name, (p, oldest, _) in backlog.items() if p},
            {name: dead for name, (_, _, dead) in backlog.items() if dead},
        )

    def size(self) -> tuple[int, int]:
        t = self.tables
        return 4096 + sum(len(e.body) + len(e.headers) for e in t.events.values()), 0

    async def beat(self, node: str, started: float, now: float) -> None:
        def work(t: Tables) -> int:
            t.beats[node] = now
            t.beats = {n: b for n, b in t.beats.items() if b >= now - BEATS_KEPT}
            return 1

        await self._writer.call(work)

    async def last_beat(self) -> float | None:
        return max(self.tables.beats.values(), default=None)

    async def open_window(self, window: Window, now: float) -> int | None:
        def work(t: Tables) -> int | None:
            if window.reason == "downtime" and any(
                w["source"] == window.source
                and w["since"] == window.since
                and w["reason"] == "downtime"
                for w in t.windows.values()
            ):
                return None
            wid = t.next("catch_ups")
            t.windows[wid] = {
                "source": window.source,
                "since": window.since,
                "until": window.until,
                "reason": window.reason,
                "state": "open",
                "tries": 0,
                "error": None,
                "created_at": now,
            }
            return wid

        return await self._writer.call(work)

    async def open_windows(self) -> list[Window]:
        return [
            Window(w["source"], w["since"], w["until"], w["reason"], wid, w["tries"], w["error"])
            for wid, w in sorted(self.tables.windows.items())
            if w["state"] == "open"
        ]

    async def tried_window(self, window_id: int) -> None:
        def work(t: Tables) -> int:
            t.windows[window_id]["tries"] += 1
            return 1

        await self._writer.call(work)

    async def close_window(
        self, window_id: int, state: str, tally: Tally, error: str | None, now: float
    ) -> None:
        def work(t: Tables) -> int:
            t.windows[window_id].update(state=state, error=error, finished_at=now, tally=tally)
            return 1

        await self._writer.call(work)

    async def read(self, work: Callable[[Reader], T]) -> T:
        await asyncio.sleep(0)
        return work(MemoryReader(self.tables))  # type: ignore[arg-type]
