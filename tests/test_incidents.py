"""Incidents as decisions (relay.incidents): failure classes, and an incident's life, as
tables. No server, no clock: times are passed in."""

from __future__ import annotations

import pytest

from relay.incidents import QUIET, Tracker, by_class, failure_class
from relay.rows import DeadOutcome

CLASSES = [
    (500, "HTTP 500", "HTTP 5xx"),
    (503, None, "HTTP 5xx"),
    (422, "HTTP 422; permanent", "HTTP 4xx"),
    (301, "HTTP 301", "HTTP 3xx"),
    (None, "timed out after 10s", "timeout"),
    (
        None,
        "ClientConnectorError: Cannot connect to host 127.0.0.1:9 ssl:default "
        "[Connect call failed ('127.0.0.1', 9)]",
        "connection refused",
    ),
    (
        None,
        "ClientConnectorDNSError: Cannot connect to host nowhere.invalid:443 ssl:default "
        "[Name or service not known]",
        "DNS",
    ),
    (
        None,
        "ClientConnectorCertificateError: Cannot connect to host x:443 ssl:True "
        "[SSLCertVerificationError: (1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
        "certificate verify failed')]",
        "TLS",
    ),
    (None, "ServerDisconnectedError: Server disconnected", "connection lost"),
    (None, "relay error: ValueError: boom", "other"),
    (None, None, "other"),
]


@pytest.mark.parametrize(
    ("status", "error", "expected"), CLASSES, ids=[c[2] + str(c[0]) for c in CLASSES]
)
def test_failure_class(status: int | None, error: str | None, expected: str) -> None:
    assert failure_class(status, error) == expected


def test_an_outage_opens_once_and_resolves_after_quiet() -> None:
    """A destination answering 500 for 3 minutes, then 200: one open, no reminder (every is
    5 minutes), one resolve once it has been quiet long enough."""
    t = Tracker(every=300.0)
    words = []
    for second in range(0, 180, 5):  # a failure every 5 s for 3 minutes
        words += t.failed("billing", "failing", 1000.0 + second, 500, "HTTP 500", "down", "e1")
        words += t.tick(1000.0 + second + 1)
    assert [w.what for w in words] == ["open"]
    assert t.tick(1000.0 + 175 + QUIET - 1) == []
    [resolved] = t.tick(1000.0 + 175 + QUIET)
    assert resolved.what == "resolve"
    incident = resolved.incident
    assert (incident.since, incident.resolved_at) == (1000.0, 1000.0 + 175 + QUIET)
    assert (incident.dominant, incident.failures) == ("HTTP 5xx", 36)
    assert incident.samples["HTTP 5xx"].body == "down"
    assert t.open == {}


def test_reminders_come_at_most_every_and_only_with_news() -> None:
    t = Tracker(every=60.0)
    said = []
    for second in range(0, 180, 5):
        t.failed("billing", "failing", float(second), 500)
        said += [(second + 1, w.what) for w in t.tick(second + 1.0)]
    reminders = [at for at, what in said if what == "remind"]
    assert reminders == [61, 121]  # 60 s after the open, then 60 s after that
    assert [w.what for w in t.tick(181.0)] == ["remind"]  # failures since 121
    assert t.tick(250.0) == []  # nothing new since 181: no word, and not quiet long enough
    assert [w.what for w in t.tick(175.0 + QUIET)] == ["resolve"]


def test_a_failure_while_recovering_keeps_it_open_and_each_class_keeps_its_first_sample() -> None:
    t = Tracker(every=60.0, quiet=100.0)
    t.failed("crm", "failing", 0.0, 422, "HTTP 422; permanent", '{"error": "bad field"}', "e1")
    t.failed("crm", "failing", 50.0, 422, "HTTP 422; permanent", "second body", "e2")
    t.failed("crm", "failing", 90.0, None, "timed out after 10s", None, "e3")
    assert t.tick(150.0)[0].what == "remind"  # news since the open, and 60 s passed
    assert t.tick(189.0) == []  # 99 s after the last failure: still open
    [resolved] = t.tick(190.0)
    incident = resolved.incident
    assert incident.counts == {"HTTP 4xx": 2, "timeout": 1}
    assert incident.dominant == "HTTP 4xx"
    assert incident.samples["HTTP 4xx"].body == '{"error": "bad field"}'
    assert incident.samples["HTTP 4xx"].event_id == "e1"
    assert incident.samples["timeout"].error == "timed out after 10s"


def test_subjects_and_kinds_are_separate_incidents() -> None:
    t = Tracker(every=60.0)
    assert [w.what for w in t.failed("a", "failing", 0.0, 500)] == ["open"]
    assert [w.what for w in t.failed("b", "failing", 0.0, 500)] == ["open"]
    assert [w.what for w in t.failed("a", "quiet", 0.0)] == ["open"]
    assert t.failed("a", "failing", 1.0, 500) == []
    assert len(t.open) == 3


def test_a_long_body_is_cut_in_the_sample() -> None:
    t = Tracker(every=60.0)
    [word] = t.failed("a", "failing", 0.0, 500, "HTTP 500", "x" * 10_000)
    assert len(word.incident.samples["HTTP 5xx"].body or "") == 512


def test_retries_never_open_one_but_keep_it_open_and_count_without_news() -> None:
    t = Tracker(every=60.0, quiet=100.0)
    assert t.failed("a", "dead", 0.0, 503, "HTTP 503", major=False) == []  # a retry alone
    assert t.open == {}
    [opened] = t.failed("a", "dead", 10.0, 422, "HTTP 422; permanent", "bad", "e1")
    assert (opened.what, opened.incident.major) == ("open", 1)
    for second in range(20, 200, 10):  # retries go on failing, nothing dies
        t.failed("a", "dead", float(second), 503, "HTTP 503", major=False)
        assert t.tick(second + 1.0) == []  # no news: no reminder, and not quiet: no resolve
    t.failed("a", "dead", 200.0, 422, "HTTP 422; permanent", "again", "e2")
    [reminder] = t.tick(201.0)
    assert reminder.what == "remind"
    news = reminder.incident.news
    assert news is not None
    assert (news.event_id, reminder.incident.major) == ("e2", 2)
    assert reminder.incident.counts == {"HTTP 4xx": 2, "HTTP 5xx": 18}  # the first retry: none open
    assert reminder.incident.dominant == "HTTP 5xx"
    [resolved] = t.tick(300.0)
    assert resolved.what == "resolve"


def test_dead_letters_by_class_merge_their_outcomes_largest_first() -> None:
    """The dead page's "by class": each last outcome put in its class, counts summed,
    the latest death kept."""
    outcomes = [
        DeadOutcome(status=500, error="HTTP 500", count=3, last_died_at=10.0),
        DeadOutcome(status=None, error="timed out after 2s", count=2, last_died_at=30.0),
        DeadOutcome(status=503, error="HTTP 503", count=2, last_died_at=20.0),
        DeadOutcome(status=None, error="TimeoutError: ", count=1, last_died_at=None),
        DeadOutcome(status=422, error="HTTP 422", count=1, last_died_at=5.0),
    ]
    assert by_class(outcomes) == [
        {"value": "HTTP 5xx", "count": 5, "last_died_at": 20.0},
        {"value": "timeout", "count": 3, "last_died_at": 30.0},
        {"value": "HTTP 4xx", "count": 1, "last_died_at": 5.0},
    ]
    assert by_class([]) == []
