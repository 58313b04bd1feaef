"""Incidents: what went wrong with a destination (or a source), since when, why, and when it
ended, as pure decisions over what relay sees (``tests/test_incidents.py`` is their table).

An attempt's failure is put in a class a person can act on (``failure_class``): an HTTP
status family, a timeout, a refused connection, a name that does not resolve, a TLS
failure. The first major failure (a destination's delivery died) of a healthy subject opens
an incident (``Tracker.failed``); every failure while it is open, major or minor (an attempt
to be retried), is counted by class, the first of each class kept as a sample (status, the start
of the body, the event). A success does not end it at once: it resolves
after ``quiet`` seconds without a failure (``Tracker.tick``), so one lucky attempt in an
outage does not close and reopen it. While open, a reminder is due at most every ``every``
seconds, only when something changed since the last word (more major failures).

What the tracker decides is a list of ``Word``: open, remind, resolve: what the alerts say
and the table stores. It holds no clock and does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from relay.rows import DeadGroup, DeadOutcome

QUIET = 120.0  # seconds without a failure after which an incident resolves
SAMPLE_BYTES = 512  # of a failing response's body, kept as the sample

DNS_WORDS = ("Name or service not known", "Temporary failure in name resolution", "nodename")


def failure_class(status: int | None, error: str | None) -> str:
    """What kind of failure an attempt's outcome is: ``HTTP 5xx`` (and 4xx, 3xx),
    ``timeout``, ``connection refused``, ``DNS``, ``TLS``, ``connection lost``, or
    ``other``."""
    if status is not None and not 200 <= status < 300:
        return f"HTTP {status // 100}xx"
    text = error or ""
    name = text.split(":", 1)[0]
    if text.startswith("timed out") or name in ("TimeoutError", "ServerTimeoutError"):
        return "timeout"
    if "DNS" in name or any(word in text for word in DNS_WORDS):
        return "DNS"
    if "SSL" in name or "Certificate" in name or "certificate verify failed" in text:
        return "TLS"
    if "Connection refused" in text or "Connect call failed" in text:
        return "connection refused"
    if name in ("ServerDisconnectedError", "ClientOSError", "ClientPayloadError"):
        return "connection lost"
    return "other"


def by_class(outcomes: Iterable[DeadOutcome]) -> list[DeadGroup]:
    """Dead letters counted per last outcome, counted again per failure class: the
    largest class first."""
    counts: dict[str, tuple[int, float | None]] = {}
    for o in outcomes:
        name = failure_class(o["status"], o["error"])
        count, last = counts.get(name, (0, None))
        died = o["last_died_at"]
        later = max(last, died) if last is not None and died is not None else last or died
        counts[name] = (count + o["count"], later)
    ordered = sorted(counts.items(), key=lambda c: (-c[1][0], c[0]))
    return [DeadGroup(value=name, count=n, last_died_at=last) for name, (n, last) in ordered]


@dataclass(frozen=True, slots=True)
class Sample:
    """The first failure of a class: what a person reads to know why."""

    status: int | None
    error: str | None
    body: str | None  # the start of the response's body
    event_id: str | None
    at: float


@dataclass(frozen=True, slots=True)
class Incident:
    subject: str  # a destination's (or a source's) name
    kind: str  # failing (a destination's attempts), quiet, rejecting, catch_up …
    since: float
    last_failure: float
    counts: dict[str, int] = field(default_factory=dict)  # failures per class
    samples: dict[str, Sample] = field(default_factory=dict)  # the first of each class
    major: int = 0  # the failures that open an incident (a destination's: deaths)
    told: int = 0  # ``major`` when the last word was sent
    told_at: float = 0.0
    news: Sample | None = None  # the first major failure since the last word
    resolved_at: float | None = None
    id: int | None = None  # its row, once stored

    @property
    def failures(self) -> int:
        return sum(self.counts.values())

    @property
    def dominant(self) -> str:
        """The class with the most failures (the first seen among equals)."""
        return max(self.counts, key=lambda c: self.counts[c]) if self.counts else "other"


@dataclass(frozen=True, slots=True)
class Word:
    """What to say of an incident: ``open``, ``remind`` or ``resolve``."""

    what: str
    incident: Incident


class Tracker:
    """The open incidents, by (subject, kind)."""

    def __init__(self, every: float, quiet: float = QUIET) -> None:
        self.every = every
        self.quiet = quiet
        self.open: dict[tuple[str, str], Incident] = {}

    def failed(
        self,
        subject: str,
        kind: str,
        now: float,
        status: int | None = None,
        error: str | None = None,
        body: str | None = None,
        event_id: str | None = None,
        major: bool = True,
    ) -> list[Word]:
        """A failure: a major one (a destination's delivery died) opens an incident, or
        counts into the open one; a minor one (an attempt to be retried) only counts into an
        open one, and keeps it open."""
        cls = failure_class(status, error)
        sample = Sample(status, error, body[:SAMPLE_BYTES] if body else body, event_id, now)
        key = (subject, kind)
        found = self.open.get(key)
        if found is None:
            if not major:
                return []
            opened = Incident(
                subject, kind, now, now, {cls: 1}, {cls: sample}, major=1, told=1, told_at=now
            )
            self.open[key] = opened
            return [Word("open", opened)]
        counts = dict(found.counts)
        counts[cls] = counts.get(cls, 0) + 1
        samples = found.samples if cls in found.samples else {**found.samples, cls: sample}
        changed = replace(found, last_failure=now, counts=counts, samples=samples)
        if major:
            news = found.news if found.news is not None else sample
            changed = replace(changed, major=found.major + 1, news=news)
        self.open[key] = changed
        return []

    def stored(self, subject: str, kind: str, incident_id: int) -> None:
        """The open incident's row id, once written."""
        found = self.open.get((subject, kind))
        if found is not None:
            self.open[(subject, kind)] = replace(found, id=incident_id)

    def tick(self, now: float) -> list[Word]:
        """Time passing: an incident quiet for ``quiet`` seconds resolves; an open one with
        news since the last word gets a reminder, at most every ``every`` seconds."""
        words: list[Word] = []
        for key, incident in list(self.open.items()):
            if now - incident.last_failure >= self.quiet:
                del self.open[key]
                words.append(Word("resolve", replace(incident, resolved_at=now)))
            elif incident.major > incident.told and now - incident.told_at >= self.every:
                words.append(Word("remind", incident))  # with its news since the last word
                self.open[key] = replace(incident, told=incident.major, told_at=now, news=None)
        return words
