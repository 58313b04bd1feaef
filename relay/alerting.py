"""Alerts that reach a person: ``[alerts]`` conditions, each throttled, sent as events.

An alert is an event of relay's own source ``_relay``, delivered like any other to the
destination the operator names (a Slack incoming webhook, a pager, anything that takes
JSON), so it is stored, retried, visible and replayable. It enters through the ingest path
the app hands ``Alerting`` (never behind ingress's back).

Kinds (``docs/operations.md``): ``dead`` (deliveries died, per destination), ``backlog``
(the oldest pending delivery of a destination is too old), ``quiet`` (a source received
nothing for too long), ``rejections`` (a source refuses too large a share of its requests),
``paused`` (the circuit breaker paused a destination), ``storage_full`` and ``catch_up`` (a
catch-up from a provider's API failed). Each kind and
subject alerts at most once per ``every``; what happens meanwhile is counted into the next
one, so a long outage sends a few messages, not thousands. Deliveries of alerts, and to the
alert destination, never raise alerts about themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from relay.errors import StorageUnavailable
from relay.ids import new_event_id
from relay.incidents import Incident, Tracker, Word
from relay.records import Gauges, IncidentRecord, NewEvent, Stored
from relay.sections import AlertsConfig
from relay.text import plural

log = logging.getLogger("relay.alerts")

ALERT_SOURCE = "_relay"  # relay's own events; no [[sources]] name can start with _
TICK = 1.0  # seconds between looks at the backlog, quiet sources and rejection shares


@dataclass(slots=True)
class _Window:
    """Requests of one source per second, over the rejection window."""

    seconds: dict[int, tuple[int, int]] = field(default_factory=dict)  # second: (all, refused)

    def add(self, now: float, refused: bool) -> None:
        second = int(now)
        total, bad = self.seconds.get(second, (0, 0))
        self.seconds[second] = (total + 1, bad + refused)

    def share(self, now: float, window: float) -> tuple[int, float]:
        start = int(now - window)
        for second in [s for s in self.seconds if s < start]:
            del self.seconds[second]
        total = sum(t for t, _ in self.seconds.values())
        bad = sum(b for _, b in self.seconds.values())
        return total, (bad / total if total else 0.0)


class Alerting:
    def __init__(
        self,
        config: AlertsConfig,
        ingest: Callable[[NewEvent], Awaitable[Stored]],
        console_url: str | None = None,
        clock: Callable[[], float] = time.time,
        save: Callable[[IncidentRecord], Awaitable[int]] | None = None,
        left: Callable[[str], Awaitable[int]] | None = None,
    ) -> None:
        self._config = config
        self._ingest = ingest
        self._save = save  # where incidents are kept (Store.save_incident)
        self._left = left  # a destination's dead letters not replayed (for a resolve)
        self.incidents = Tracker(config.every)
        # What each condition said last (subject, kind): its reminders repeat it.
        self._conditions: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._console = console_url.rstrip("/") if console_url else None
        self._clock = clock
        self._last_seen: dict[str, float] = {}  # source: last request received
        self._windows: dict[str, _Window] = {}
        self._started = clock()
        self.ignored = 0  # deaths of alerts, or at the alert destination: never alerted on

    def update(self, config: AlertsConfig) -> None:
        """A reloaded config."""
        self._config = config
        self.incidents.every = config.every

    # -- what happens, reported by ingress and the lanes ---------------------------------------

    def request(self, source: str, refused: bool, now: float) -> None:
        """A request to a source, accepted or refused (cheap: on the ingest path)."""
        if not refused:
            self._last_seen[source] = now
        if self._config.rejections is not None:
            window = self._windows.get(source)
            if window is None:
                window = self._windows[source] = _Window()
            window.add(now, refused)

    def seen(self, last: dict[str, float]) -> None:
        """When each source last received something, from the database at start."""
        for source, at in last.items():
            self._last_seen[source] = max(at, self._last_seen.get(source, 0.0))

    async def died(
        self,
        destination: str,
        source: str,
        event_id: str,
        error: str | None,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        """A delivery died: opens the destination's incident (alerted at once), or counts
        into it (said in the next reminder)."""
        if self._about_alerts(destination, source):
            return
        now = self._clock()
        words = self.incidents.failed(destination, DEAD, now, status, error, body, event_id)
        for word in words:
            await self._said(word, now)

    def retried(
        self,
        destination: str,
        source: str,
        event_id: str,
        error: str | None,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        """An attempt failed and will be tried again: counted into an open incident (it
        stays open), never opening one."""
        if self._about_alerts(destination, source):
            return
        self.incidents.failed(
            destination, DEAD, self._clock(), status, error, body, event_id, major=False
        )

    def _about_alerts(self, destination: str, source: str) -> bool:
        """An alert never alerts about itself."""
        if source == ALERT_SOURCE or destination == self._config.destination:
            self.ignored += 1
            return True
        return False

    async def _said(self, word: Word, now: float) -> None:
        """An incident's word: kept (the incidents table), and said when alerts are on."""
        incident = word.incident
        left = None
        if word.what == "resolve" and incident.kind == DEAD and self._left is not None:
            with contextlib.suppress(StorageUnavailable):
                left = await self._left(incident.subject)
        if self._save is not None:
            with contextlib.suppress(StorageUnavailable):
                saved = await self._save(record_of(incident, left))
                self.incidents.stored(incident.subject, incident.kind, saved)
                incident = replace(incident, id=saved)
        config = self._config
        if config.destination is None or (incident.kind == DEAD and not config.dead):
            return
        if word.what == "resolve":
            await self._resolved(incident, left, now)
        elif incident.kind == DEAD:
            await self._dead(incident, word.what, now)
        else:  # a condition (backlog, quiet, rejections, catch-up, certificate): as last seen
            summary, fields = self._conditions.get((incident.subject, incident.kind), ("", {}))
            fields = {**fields, **_incident_fields(incident, "open")}
            await self._send(incident.kind, incident.subject, summary, fields, now)

    async def _dead(self, incident: Incident, what: str, now: float) -> None:
        destination = incident.subject
        first = next(iter(incident.samples.values())) if what == "open" else incident.news
        n = 1 if what == "open" else incident.major - incident.told
        error = first.error if first is not None else None
        event = first.event_id if first is not None else None
        await self._send(
            "dead",
            destination,
            f"{n} deliver{'y' if n == 1 else 'ies'} to {destination} died: {error}",
            {
                "destination": destination,
                "count": n,
                "first_event_id": event,
                "first_error": error,
                **_incident_fields(incident, "open"),
            },
            now,
            event=event,
        )

    async def _resolved(self, incident: Incident, left: int | None, now: float) -> None:
        subject = incident.subject
        lasted = _span((incident.resolved_at or now) - incident.since)
        if incident.kind == DEAD:
            tail = f"; {plural(left, 'dead letter')} left to replay" if left else ""
            summary = (
                f"{subject} recovered after {lasted} ({incident.dominant}, "
                f"{plural(incident.major, 'delivery', 'deliveries')} died){tail}"
            )
        else:
            summary = f"{subject}: {incident.kind} is over, after {lasted}"
        # Named as the opening alert named it, so a consumer that files alerts by
        # destination or source finds the end beside the start.
        opened = self._conditions.get((subject, incident.kind), ("", {}))[1]
        named = {"destination": subject} if incident.kind == DEAD else {}
        named |= {k: opened[k] for k in ("destination", "source") if k in opened}
        await self._send(
            "resolved",
            subject,
            summary,
            {
                **named,
                "subject": subject,
                "incident_kind": incident.kind,
                "duration_seconds": int((incident.resolved_at or now) - incident.since),
                "left_to_replay": left,
                **_incident_fields(incident, "resolved"),
            },
            now,
        )

    async def paused(
        self, destination: str, since: float, waiting: int, reason: str, to: str | None
    ) -> None:
        """The circuit breaker paused a destination failing since ``since``, with
        ``waiting`` deliveries queued (``to``: circuit.alert, if set)."""
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
        text = (
            f"relay paused destination {destination}: failing since {iso}, "
            f"{plural(waiting, 'delivery', 'deliveries')} waiting. Resume it once it is back."
        )
        fields = {
            "type": "destination.paused",
            "text": text,
            "destination": destination,
            "since": iso,
            "waiting": waiting,
            "reason": reason,
        }
        await self._send("paused", destination, text, fields, self._clock(), to=to)

    async def storage_full(self, fields: dict[str, Any], to: str | None) -> None:
        await self._send("storage_full", "storage", str(fields["text"]), fields, self._clock(), to)

    async def catch_up(self, source: str, fields: dict[str, Any]) -> None:
        """An automatic catch-up of a source failed (at most one per ``every``)."""
        if self._config.catch_up:
            await self._once("catch_up", source, str(fields["text"]), fields, self._clock())

    async def certificate(self, fields: dict[str, Any]) -> None:
        """The public certificate keeps failing to renew (at most one per ``every``)."""
        domains = ",".join(fields.get("domains", []))
        await self._once("certificate", domains, str(fields["text"]), fields, self._clock())

    # -- the conditions that are looked at -------------------------------------------------

    async def run(
        self,
        gauges: Callable[[], Awaitable[Gauges]],
        leader: Callable[[], bool] = lambda: True,
        last_received: Callable[[list[str]], Awaitable[dict[str, float]]] | None = None,
    ) -> None:
        """Look every TICK. With several relays on one database, only the ``leader`` (the
        one running housekeeping) checks backlogs and quiet sources, and reads when each
        source last received an event from the database (``last_received``), since each
        relay sees only its share of the requests. Dead deliveries are alerted by the
        relay that recorded them."""
        while True:
            try:
                lead = leader()
                if lead and last_received is not None and self._config.quiet:
                    self.seen(await last_received(list(self._config.quiet)))
                await self.look(self._clock(), gauges, lead)
            except StorageUnavailable as exc:
                log.warning("alerts.look_failed", extra={"fields": {"error": str(exc)}})
            await asyncio.sleep(TICK)

    async def look(
        self, now: float, gauges: Callable[[], Awaitable[Gauges]], lead: bool = True
    ) -> None:
        for word in self.incidents.tick(now):
            await self._said(word, now)
        config = self._config
        if config.destination is None or not lead:
            return
        if config.backlog is not None:
            for destination, (count, oldest) in (await gauges()).pending.items():
                age = now - oldest
                if age > config.backlog and destination != config.destination:
                    await self._once(
                        "backlog",
                        destination,
                        f"{destination}: the oldest of {count} pending deliveries is "
                        f"{_span(age)} old (alert above {_span(config.backlog)})",
                        {"destination": destination, "count": count, "oldest_seconds": int(age)},
                        now,
                    )
        for source, limit in config.quiet.items():
            last = self._last_seen.get(source, self._started)
            if now - last > limit:
                await self._once(
                    "quiet",
                    source,
                    f"{source} has received nothing for {_span(now - last)} "
                    f"(alert above {_span(limit)})",
                    {"source": source, "silent_seconds": int(now - last)},
                    now,
                )
        rule = config.rejections
        if rule is not None:
            for source, window in self._windows.items():
                total, share = window.share(now, rule.window)
                if total >= rule.min and share > rule.share:
                    await self._once(
                        "rejections",
                        source,
                        f"{source} refused {share:.0%} of {total} requests in the last "
                        f"{_span(rule.window)} (alert above {rule.share:.0%})",
                        {"source": source, "count": total, "share": round(share, 3)},
                        now,
                    )

    async def _once(
        self, kind: str, subject: str, summary: str, fields: dict[str, Any], now: float
    ) -> None:
        """A condition holds now: its incident opens (told at once), or counts as news for
        the next reminder (at most every ``every``); it resolves once the condition has
        not held for the quiet period."""
        self._conditions[(subject, kind)] = (summary, fields)
        for word in self.incidents.failed(subject, kind, now, error=summary):
            await self._said(word, now)

    async def _send(
        self,
        kind: str,
        subject: str,
        summary: str,
        fields: dict[str, Any],
        now: float,
        to: str | None = None,
        event: str | None = None,
    ) -> None:
        destination = to or self._config.destination
        if destination is None:  # no alerts configured: the log has its own lines about it
            return
        link = f"{self._console}/ui/events/{event}" if self._console and event else None
        if self._config.format == "slack":
            text = summary + (f" <{link}|open it>" if link else "")
            payload: dict[str, Any] = {"text": text}
            if kind == "resolved":  # a green line: it is over
                payload = {"attachments": [{"color": "good", "text": text}]}
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            payload = {"kind": kind, "summary": summary, **fields, "at": stamp}
            if link:
                payload["console"] = link
        await self.send(destination, f"alert.{kind}", payload)

    async def send(self, destination: str, event_type: str, payload: dict[str, Any]) -> None:
        """One alert event to ``destination``: its body is ``payload`` as JSON."""
        now = time.time()
        event = NewEvent(
            id=new_event_id(now),
            source=ALERT_SOURCE,
            received_at=now,
            idempotency_key=None,
            event_type=event_type,
            content_type="application/json",
            remote_addr=None,
            headers=json.dumps([["Content-Type", "application/json"]]),
            body=json.dumps(payload).encode(),
            destinations=(destination,),
        )
        log.warning("alert.sent", extra={"fields": {"type": event_type, "to": destination}})
        try:
            await self._ingest(event)
        except StorageUnavailable:
            log.error("alert.failed", extra={"fields": {"to": destination}})


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


DEAD = "dead"  # the incident kind of a destination whose deliveries die


def _incident_fields(incident: Incident, status: str) -> dict[str, Any]:
    """What every alert of an incident says of it (relay.incidents)."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(incident.since))
    dominant = incident.samples.get(incident.dominant)
    return {
        "incident": incident.id,
        "status": status,
        "since": since,
        "failure_class": incident.dominant,
        "failures": incident.failures,
        "sample": None
        if dominant is None
        else {"status": dominant.status, "body": dominant.body, "event_id": dominant.event_id},
    }


def record_of(incident: Incident, left: int | None = None) -> IncidentRecord:
    """An incident as the store keeps it."""
    return IncidentRecord(
        subject=incident.subject,
        kind=incident.kind,
        status="resolved" if incident.resolved_at is not None else "open",
        since=incident.since,
        last_failure=incident.last_failure,
        failures=incident.failures,
        dominant=incident.dominant,
        counts=json.dumps(incident.counts),
        samples=json.dumps({cls: asdict(sample) for cls, sample in incident.samples.items()}),
        resolved_at=incident.resolved_at,
        left_to_replay=left,
        id=incident.id,
    )
