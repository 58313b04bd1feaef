"""The retry policy is pure: unit tests on values."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from relay.retry import backoff, decide, is_retryable, parse_retry_after
from relay.sections import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base=1.0, factor=2.0, cap=10.0, max_age=3600.0)


@pytest.mark.parametrize("status", [None, 408, 425, 429, 500, 502, 503, 599])
def test_retryable(status: int | None) -> None:
    assert is_retryable(status)


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 422])
def test_permanent(status: int) -> None:
    assert not is_retryable(status)
    assert decide(POLICY, attempt=1, status=status, created_at=0, now=0).state == "dead"


def test_success_is_delivered() -> None:
    assert decide(POLICY, attempt=3, status=204, created_at=0, now=5).state == "delivered"


def test_backoff_has_full_jitter_under_an_exponential_ceiling() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (60, 10.0)]:
        delays = [backoff(POLICY, attempt, rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.9  # the whole range is used, not a fixed step
        assert min(delays) < ceiling * 0.1


def test_max_attempts_makes_it_dead() -> None:
    assert decide(POLICY, attempt=4, status=503, created_at=0, now=0).state == "pending"
    last = decide(POLICY, attempt=5, status=503, created_at=0, now=0)
    assert last.state == "dead"
    assert last.reason == "gave up after 5 attempts"


def test_max_age_makes_it_dead() -> None:
    young = decide(POLICY, attempt=1, status=500, created_at=0, now=100)
    assert young.state == "pending"
    old = decide(POLICY, attempt=1, status=500, created_at=0, now=3599, retry_after=5)
    assert old.state == "dead"
    assert "max_age" in (old.reason or "")


def test_retry_after_replaces_backoff_and_is_capped() -> None:
    honoured = decide(POLICY, attempt=1, status=429, created_at=0, now=10, retry_after=30)
    assert honoured.next_attempt_at == 40
    capped_policy = RetryPolicy(retry_after_max=60, max_age=86400)
    capped = decide(capped_policy, attempt=1, status=503, created_at=0, now=0, retry_after=1e6)
    assert capped.next_attempt_at == 60


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == pytest.approx(90, abs=1)
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0
    for junk in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2020"):
        assert parse_retry_after(junk, now) is None


def test_explicit_schedule_with_jitter() -> None:
    policy = RetryPolicy(schedule=(5, 300, 1800), max_attempts=10)
    low, high = random.Random(0), random.Random(1)
    for attempt, wait in ((1, 5), (2, 300), (3, 1800), (4, 1800), (9, 1800)):
        for rng in (low, high):
            delay = backoff(policy, attempt, rng)
            assert wait * 0.9 <= delay <= wait  # 10% jitter by default for a schedule
    exact = RetryPolicy(schedule=(5, 300), jitter=0.0)
    assert [backoff(exact, n) for n in (1, 2, 3)] == [5, 300, 300]
    full = RetryPolicy(base=10, factor=1, jitter=0.0)
    assert backoff(full, 3) == 10
