"""Reads for people (the ``Reader`` of ``relay.store.base``), on any DB-API connection.

The same reads run on SQLite (``relay.store.sqlite.reader``) and PostgreSQL
(``relay.store.postgresql``): each brings its connection, its named queries
(``relay/sql/…/queries.sql``, the same names) and its ``Dialect`` for the filters. The CLI
opens one whether or not relay runs; the admin API and the console get one per request in
a thread (``Store.read``). Lists are paged by keyset, so page 1,000 costs what page 1 does.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from relay import rows, sql
from relay.records import (
    MAX_LIMIT,
    DeadFilter,
    EventFilter,
    ReplaySelection,
    ReplayTarget,
)
from relay.store import clauses, rollup
from relay.verify.base import redacted


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def _body(raw: bytes) -> tuple[str, Any, str | None]:
    """How the body reads: (encoding, body, the JSON's text as received)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(raw).decode(), None
    try:
        return "json", json.loads(text), text
    except ValueError:
        return "text", text, None


class SqlReader:
    """The reads, whatever the database. ``conn``: a DB-API connection with ``execute``."""

    def __init__(self, conn: Any, dialect: clauses.Dialect) -> None:
        self._conn = conn
        self._dialect = dialect
        self._q = sql.queries(dialect.name)

    def _ids(self, ids: list[str]) -> Any:
        return self._dialect.id_list(ids)

    def known_keys(self, source: str, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):  # bounded statements, whatever the count
            params = {"source": source, "keys": self._ids(keys[start : start + 500])}
            found.update(row[0] for row in self._conn.execute(self._q["known_keys"], params))
        return found

    def events(self, f: EventFilter) -> list[rows.EventRow]:
        d = self._dialect
        sparse = False
        if f.status in clauses.SPARSE_STATES:
            # Few pending or dead deliveries (the usual case): list their events, rather
            # than walk every event newest first looking for them (a whole-table walk when
            # there are none). Many: the walk finds a page soon.
            count, params = clauses.count_in_state(f.status, f.destination)
            found = self._conn.execute(d.finish(count), [*params, clauses.SPARSE + 1])
            sparse = int(found.fetchone()[0]) <= clauses.SPARSE
        where, params = clauses.events_where(f, d, sparse)
        statement = d.finish(clauses.list_events(where, d))
        found = self._conn.execute(statement, [*params, _limit(f.limit)])
        listed = [
            rows.EventRow(
                id=r[0],
                source=r[1],
                received_at=r[2],
                event_type=r[3],
                idempotency_key=r[4],
                body_bytes=r[5],
                deliveries=dict(pair.split(":", 1) for pair in (r[6] or "").split()),
                items=0,
            )
            for r in found
        ]
        bare = [row["id"] for row in listed if not row["deliveries"]]
        if bare:  # a request without deliveries of its own may be a batch that was split
            counts = dict(self._conn.execute(self._q["item_counts"], {"ids": self._ids(bare)}))
            for row in listed:
                row["items"] = counts.get(row["id"], 0)
        return listed

    def event_ids_starting(self, prefix: str) -> list[str]:
        """Up to two event ids that start with ``prefix``: one means it names an event."""
        rows = self._conn.execute(self._q["events_by_prefix"], {"prefix": prefix})
        return [row[0] for row in rows]

    def event(self, event_id: str) -> rows.Event | None:
        q, conn = self._q, self._conn
        row = conn.execute(q["event_by_id"], (event_id,)).fetchone()
        if row is None:
            return None
        encoding, body, raw = _body(row[9])
        event = rows.Event(
            id=row[0],
            source=row[1],
            received_at=row[2],
            occurred_at=row[3],
            event_type=row[4],
            idempotency_key=row[5],
            content_type=row[6],
            remote_addr=row[7],
            headers=redacted((name, value) for name, value in json.loads(row[8])),
            redacted_at=row[10],
            origin=row[19],
            encoding=encoding,
            body=body,
            deliveries=[
                self._delivery(d)
                for d in conn.execute(q["event_deliveries"], (event_id,)).fetchall()
            ],
        )
        if raw is not None:
            event["raw"] = raw
        if any(value is not None for value in row[11:18]):
            event["normalized"] = rows.Normalized(
                parent_id=row[11],
                provider=row[12],
                channel=row[13],
                provider_type=row[14],
                subject=row[15],
                contact=row[16],
                conversation=row[17],
                stale=bool(row[18]),
            )
        items = conn.execute(q["event_items"], (event_id,)).fetchall()
        if items:
            event["items"] = [rows.Item(id=i[0], event_type=i[1], key=i[2]) for i in items]
        return event

    def _delivery(self, d: Any) -> rows.Delivery:
        attempts = self._conn.execute(self._q["delivery_attempts"], (d[0],))
        return rows.Delivery(
            id=d[0],
            destination=d[1],
            state=d[2],
            attempts=d[3],
            next_attempt_at=d[4],
            created_at=d[5],
            delivered_at=d[6],
            last_status=d[7],
            last_error=d[8],
            replay_of=d[9],
            history=[
                rows.Attempt(
                    number=a[0],
                    started_at=a[1],
                    duration_ms=a[2],
                    status=a[3],
                    error=a[4],
                    response_excerpt=a[5],
                    outcome=a[6],
                    response_headers=json.loads(a[7]) if a[7] else None,
                )
                for a in attempts.fetchall()
            ],
        )

    def events_after(self, after: int, source: str | None, limit: int) -> list[rows.TailRow]:
        params = {"after": after, "source": source, "limit": _limit(limit)}
        return [
            rows.TailRow(
                position=r[0],
                id=r[1],
                received_at=r[2],
                source=r[3],
                event_type=r[4],
                idempotency_key=r[5],
            )
            for r in self._conn.execute(self._q["events_after"], params)
        ]

    def latest_position(self) -> int:
        return int(self._conn.execute(self._q["latest_position"]).fetchone()[0])

    def dead(self, f: DeadFilter, limit: int = 50) -> list[rows.DeadRow]:
        d = self._dialect
        where, params = clauses.dead_where(f, d)
        found = self._conn.execute(d.finish(clauses.list_dead(where)), [*params, _limit(limit)])
        return [
            rows.DeadRow(
                delivery_id=r[0],
                event_id=r[1],
                source=r[2],
                event_type=r[3],
                destination=r[4],
                attempts=r[5],
                last_status=r[6],
                last_error=r[7],
                died_at=r[8],
            )
            for r in found
        ]

    def count_dead(self, f: DeadFilter) -> int:
        d = self._dialect
        where, params = clauses.dead_where(f, d)
        return int(self._conn.execute(d.finish(clauses.count_dead(where)), params).fetchone()[0])

    def dead_summary(self, f: DeadFilter) -> tuple[int, float | None]:
        """How many dead deliveries match, and when the last of them died."""
        d = self._dialect
        where, params = clauses.dead_where(f, d)
        count, last = self._conn.execute(d.finish(clauses.summarize_dead(where)), params).fetchone()
        return int(count), last

    def dead_by_destination(self, f: DeadFilter) -> dict[str, int]:
        d = self._dialect
        where, params = clauses.dead_where(f, d)
        rows = self._conn.execute(d.finish(clauses.dead_by_destination(where)), params)
        return {name: int(count) for name, count in rows}

    def dead_grouped(self, f: DeadFilter, by: str, limit: int = 100) -> list[rows.DeadGroup]:
        """The dead letters matching ``f``, counted per destination, error, type or source
        (``clauses.DEAD_GROUPS``), the largest group first."""
        d = self._dialect
        where, params = clauses.dead_where(f, d)
        statement = d.finish(clauses.dead_grouped(where, by))
        found = self._conn.execute(statement, [*params, _limit(limit)])
        return [rows.DeadGroup(value=r[0], count=int(r[1]), last_died_at=r[2]) for r in found]

    def dead_outcomes(self, f: DeadFilter, limit: int = 1000) -> list[rows.DeadOutcome]:
        d = self._dialect
        where, params = clauses.dead_where(f, d)
        found = self._conn.execute(d.finish(clauses.dead_outcomes(where)), [*params, _limit(limit)])
        return [
            rows.DeadOutcome(status=r[0], error=r[1], count=int(r[2]), last_died_at=r[3])
            for r in found
        ]

    def dead_groups(self, limit: int = 100) -> list[rows.DeadSet]:
        found = self._conn.execute(self._q["dead_groups"], (_limit(limit),))
        return [
            rows.DeadSet(destination=r[0], error=r[1], count=int(r[2]), last_died_at=r[3])
            for r in found
        ]

    def delivered_destinations(self) -> list[str]:
        return [row[0] for row in self._conn.execute(self._q["delivered_destinations"])]

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Counts for the last hour and the current backlog, each from an index (a full
        scan of a million-event table would cost a second on every refresh)."""
        q, conn = self._q, self._conn
        now = now if now is not None else time.time()
        hour = now - 3600
        sources: dict[str, dict[str, Any]] = {
            r[0]: {"events_last_hour": r[1]} for r in conn.execute(q["stats_sources"], (hour,))
        }
        for source, count in conn.execute(q["stats_rejections"], (hour,)):
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

        for name, (pending, oldest, dead) in self.backlog().items():
            waited = int(now - oldest) if pending else None
            entry(name).update(pending=pending, dead=dead, oldest_pending_seconds=waited)
        for name in self.delivered_destinations():
            (count,) = conn.execute(q["delivered_since"], (name, hour)).fetchone()
            entry(name)["delivered_last_hour"] = count
        for name, paused, _, _ in conn.execute(q["destination_states"]):
            if paused or name in destinations:  # "paused now", traffic or not
                entry(name)["paused"] = bool(paused)
        ordered = {name: destinations[name] for name in sorted(destinations)}
        return {"at": now, "sources": sources, "destinations": ordered}

    def rejections(
        self,
        source: str | None = None,
        limit: int = 50,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
    ) -> list[rows.RejectionRow]:
        params = {
            "source": source,
            "limit": _limit(limit),
            "since": since,
            "until": until,
            "before": before,
        }
        return [
            rows.RejectionRow(
                at=r[0],
                source=r[1],
                status=r[2],
                reason=r[3],
                remote_addr=r[4],
                method=r[5],
                headers=json.loads(r[6]),
                id=r[7],
            )
            for r in self._conn.execute(self._q["rejections_latest"], params)
        ]

    def minutes(self, now: float | None = None) -> list[tuple[int, str, str, str, int]]:
        now = now if now is not None else time.time()
        since = rollup.minute_of(now) - rollup.WINDOW + 1
        return [
            (int(r[0]), r[1], r[2], r[3], int(r[4]))
            for r in self._conn.execute(self._q["minutes_since"], {"since": since})
        ]

    def totals(self, since: float, until: float) -> dict[tuple[str, str], dict[str, int]]:
        """The rollup's counts from ``since`` until ``until`` (whole minutes), per (kind,
        name): received, rejected, queued, delivered, retried, dead, lat0…"""
        params = {"first": rollup.minute_of(since), "end": rollup.minute_of(until - 1e-9) + 1}
        found: dict[tuple[str, str], dict[str, int]] = {}
        for kind, name, metric, n in self._conn.execute(self._q["minutes_between"], params):
            found.setdefault((kind, name), {})[metric] = int(n)
        return found

    def backlog(self) -> dict[str, tuple[int, float, int]]:
        found: dict[str, tuple[int, float, int]] = {}
        for name, count, oldest in self._conn.execute(self._q["gauges_pending"]):
            found[name] = (int(count), float(oldest), 0)
        for name, count in self._conn.execute(self._q["gauges_dead"]):
            pending, oldest, _ = found.get(name, (0, 0.0, 0))
            found[name] = (pending, oldest, int(count))
        return found

    def replay_targets(self, sel: ReplaySelection) -> list[ReplayTarget]:
        """What ``sel`` replays: each selected event once per destination, whatever its
        history (an event replayed before has several deliveries there, and a filter that
        took each went out once per earlier delivery: 3, then 4, then 8). The latest of
        them is the one the new delivery repeats."""
        d = self._dialect
        statement, params = clauses.replay_candidates(sel, d)
        latest: dict[tuple[str, str | None], ReplayTarget] = {}
        for row in self._conn.execute(d.finish(statement), params):  # by delivery id
            target = ReplayTarget(*row)
            latest[(target.event_id, target.destination)] = target
        return list(latest.values())

    def routing(self, event_ids: list[str]) -> dict[str, tuple[str | None, str, bytes]]:
        """What routing and ordering look at, per event: (type, headers JSON, body)."""
        found = {}
        for start in range(0, len(event_ids), 500):
            ids = self._ids(event_ids[start : start + 500])
            for row in self._conn.execute(self._q["routing_inputs"], {"ids": ids}):
                found[row[0]] = (row[1], row[2], row[3])
        return found

    def last_received(self, sources: list[str]) -> dict[str, float]:
        found = {}
        for source in sources:
            row = self._conn.execute(self._q["last_received"], (source,)).fetchone()
            if row is not None:
                found[source] = float(row[0])
        return found

    def audit(
        self,
        since: float | None = None,
        limit: int = 50,
        until: float | None = None,
        before: int | None = None,
        action: str | None = None,
    ) -> list[rows.AuditRow]:
        """The newest operator actions first."""
        params = {
            "since": since,
            "until": until,
            "limit": _limit(limit),
            "before": before,
            "action": action,
        }
        return [
            rows.AuditRow(
                id=r[0],
                at=r[1],
                actor=r[2],
                origin=r[3],
                action=r[4],
                target=r[5],
                params=json.loads(r[6]),
                result=json.loads(r[7]),
            )
            for r in self._conn.execute(self._q["audit_latest"], params)
        ]

    def incidents(
        self, status: str | None = None, limit: int = 50, before: int | None = None
    ) -> list[rows.IncidentRow]:
        params = {"status": status, "limit": _limit(limit), "before": before}
        return [
            rows.IncidentRow(
                id=r[0],
                subject=r[1],
                kind=r[2],
                status=r[3],
                since=r[4],
                last_failure=r[5],
                resolved_at=r[6],
                failures=r[7],
                dominant=r[8],
                counts=json.loads(r[9]),
                samples=json.loads(r[10]),
                left_to_replay=r[11],
            )
            for r in self._conn.execute(self._q["incidents_of"], params)
        ]

    def backup(self, target: Path) -> int:
        raise NotImplementedError
