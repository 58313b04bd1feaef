"""Console sessions and the sign-in throttle, as tables (relay.admin.console.sessions)."""

from __future__ import annotations

import pytest

from relay.admin.console.sessions import FORGET_AFTER, MAX_DELAY, Sessions, Throttle


def test_a_session_lasts_its_lifetime_and_closing_ends_it() -> None:
    sessions = Sessions(b"key", lifetime=100.0)
    first = sessions.open(now=0.0)
    second = sessions.open(now=0.0)
    assert sessions.valid(first, 99.0)
    assert not sessions.valid(first, 100.0)  # expired
    sessions.close(second)
    assert not sessions.valid(second, 1.0)  # signed out: every copy of the cookie is dead
    assert not sessions.valid("made-up", 1.0)
    assert not sessions.valid(None, 1.0)


def test_form_tokens_differ_per_session_and_key() -> None:
    a, b = Sessions(b"key"), Sessions(b"other")
    session = a.open(0.0)
    assert a.csrf(session) != a.csrf(a.open(0.0))
    assert a.csrf(session) != b.csrf(session)


@pytest.mark.parametrize(
    ("tries", "delay"),
    [(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.5), (5, 1.0), (6, 2.0), (7, 4.0), (9, MAX_DELAY)],
)
def test_wrong_tokens_wait_longer_each_time(tries: int, delay: float) -> None:
    throttle = Throttle()
    waits = [throttle.wrong("10.0.0.1", now=float(i)) for i in range(tries)]
    assert waits[-1] == delay
    assert throttle.wrong("10.0.0.2", now=float(tries)) == 0.0  # another address


def test_an_address_starts_afresh_after_a_quiet_while() -> None:
    throttle = Throttle()
    for i in range(6):
        throttle.wrong("a", now=float(i))
    assert throttle.wrong("a", now=6.0 + FORGET_AFTER) == 0.0


def test_the_table_of_addresses_is_bounded() -> None:
    throttle = Throttle(max_addresses=2)
    for i in range(5):
        throttle.wrong("a", now=float(i))
    throttle.wrong("b", now=5.0)
    throttle.wrong("c", now=5.0)  # "a" is forgotten
    assert throttle.wrong("a", now=6.0) == 0.0
