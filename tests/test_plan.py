"""A lane's wake-up plan and its queue bookkeeping, as tables (relay.scheduler.plan):
no server, no database, the clocks passed in."""

from __future__ import annotations

import pytest

from relay.scheduler.plan import (
    REFILL_WAIT,
    Claim,
    Knowledge,
    LaneState,
    Sleep,
    after_claim,
    backoff,
    may_hand_over,
    paced,
    plan,
)

NOW, CLOCK = 1_000.0, 50.0


def knowledge(
    news: bool = False, backlog: bool = False, timer: float | None = None, known: bool = True
) -> Knowledge:
    k = Knowledge()
    k.news, k.backlog, k.timer, k.timer_known = news, backlog, timer, known
    return k


def state(**changes: object) -> LaneState:
    values: dict[str, object] = {
        "paused": False,
        "free": 10,
        "sending": 0,
        "refill_at": 5,
        "allowance": None,
        "circuit_wait": None,
        "known": knowledge(news=True),
        "hold_until": None,
    }
    values.update(changes)
    return LaneState(**values)  # type: ignore[arg-type]


CASES = [
    ("new deliveries: claim all free slots", state(), Claim(10, due=False)),
    ("paused: sleep until resumed", state(paused=True), Sleep(None, None)),
    ("no free slot: sleep until an attempt ends", state(free=0, sending=10), Sleep(None, None)),
    ("circuit open: wait for it", state(allowance=0, circuit_wait=7.5), Sleep(7.5, None)),
    ("circuit open, no wait known", state(allowance=0, circuit_wait=None), Sleep(None, None)),
    ("circuit half-open: one probe", state(allowance=1), Claim(1, due=False)),
    (
        "nothing known to be due: sleep until woken",
        state(known=knowledge()),
        Sleep(None, None),
    ),
    (
        "a retry later: sleep until it",
        state(known=knowledge(timer=NOW + 30)),
        Sleep(30.0, None),
    ),
    (
        "a retry due now: claim, marked due",
        state(known=knowledge(timer=NOW - 1)),
        Claim(10, due=True),
    ),
    (
        "the last claim was full: claim again",
        state(known=knowledge(backlog=True)),
        Claim(10, False),
    ),
    ("the timer is unknown: claim and ask", state(known=knowledge(known=False)), Claim(10, False)),
    (
        "busy and few slots free: hold to batch the claim",
        state(free=2, sending=8),
        Sleep(pytest.approx(REFILL_WAIT), CLOCK + REFILL_WAIT),
    ),
    (
        "the hold is over: claim what is free",
        state(free=2, sending=8, hold_until=CLOCK - 0.001),
        Claim(2, due=False),
    ),
    (
        "a hold in progress is kept by other sleeps",
        state(paused=True, hold_until=CLOCK + 1),
        Sleep(None, CLOCK + 1),
    ),
    ("enough slots free: no hold", state(free=6, sending=4), Claim(6, due=False)),
]


@pytest.mark.parametrize(("name", "given", "expected"), CASES, ids=[c[0] for c in CASES])
def test_plan(name: str, given: LaneState, expected: Sleep | Claim) -> None:
    assert plan(given, NOW, CLOCK) == expected


def test_a_claim_takes_the_news_and_a_full_claim_means_more() -> None:
    k = Knowledge()
    k.claiming(due=False)
    k.claimed(got=10, asked=10)
    assert (k.news, k.backlog) == (False, True)
    k.claiming(due=False)
    k.claimed(got=3, asked=10)
    assert (k.news, k.backlog) == (False, False)
    assert k.has_work(NOW)  # the timer is still unknown: ask
    k.answer(k.asking(), None)
    assert not k.has_work(NOW)
    assert k.idle


def test_a_notify_during_a_claim_counts_as_news() -> None:
    k = knowledge()
    k.claiming(due=False)
    k.notify()  # committed while the claim ran
    k.claimed(got=0, asked=10)
    assert k.has_work(NOW)


def test_a_retry_recorded_while_the_timer_was_asked_is_not_lost() -> None:
    k = knowledge(known=False)
    token = k.asking()
    k.retry_at(NOW + 5)  # recorded meanwhile, maybe after the query's snapshot
    k.answer(token, NOW + 60)
    assert k.timer == NOW + 5
    assert k.timer_known


def test_an_earlier_retry_moves_the_timer_and_rearms_the_lane() -> None:
    k = knowledge(timer=NOW + 60)
    k.retry_at(NOW + 60 + 1)
    assert (k.timer, k.rearm) == (NOW + 60, False)
    k.retry_at(NOW + 2)
    assert (k.timer, k.rearm) == (NOW + 2, True)
    assert k.wake_for(NOW)


def test_forgetting_distrusts_answers_asked_before() -> None:
    k = knowledge()
    token = k.asking()
    k.forget()
    k.answer(token, NOW + 10)
    assert not k.timer_known
    assert k.news


def test_a_due_claim_makes_the_timer_unknown() -> None:
    k = knowledge(timer=NOW - 1)
    k.claiming(due=True)
    assert not k.timer_known


WAITING = [
    ("nothing holds it", state(), {}, None),
    ("paused", state(paused=True), {}, "the destination is paused"),
    ("circuit open", state(allowance=0, circuit_wait=12.4), {}, "its circuit is open"),
    ("slots busy", state(free=0, sending=10), {}, "all 10 of its slots are busy"),
    ("agent offline", state(free=0, sending=0), {"group": "office"}, "no agent of office"),
    ("rate limit", state(), {"rate_wait": 0.4}, "its rate limit holds it back (0.4 s"),
    ("cluster", state(), {"cluster_wait": 0.05}, "the cluster's limits hold it back"),
    ("paused first", state(paused=True, free=0), {"rate_wait": 1.0}, "the destination is paused"),
]


@pytest.mark.parametrize(("name", "lane", "extra", "says"), WAITING, ids=[c[0] for c in WAITING])
def test_why_a_due_delivery_waits(
    name: str, lane: LaneState, extra: dict[str, object], says: str | None
) -> None:
    from relay.scheduler.plan import waiting

    given: dict[str, object] = {"group": None, "rate_wait": 0.0, "cluster_wait": None}
    given.update(extra)
    found = waiting(lane, max_concurrency=10, **given)  # type: ignore[arg-type]
    assert (found is None) if says is None else (found is not None and says in found)


# -- after a claim (what Lane._step does with the answer) ----------------------------------

AFTER = [
    # name, (got, asked, wanted), knowledge, held_until, rate_wait, expected
    (
        "all asked for: sleep until an attempt ends",
        (4, 4, 4),
        knowledge(),
        None,
        None,
        Sleep(None),
    ),
    (
        "all the rate limit let it ask for: back at the next token",
        (2, 2, 10),
        knowledge(),
        None,
        0.25,
        Sleep(0.25),
    ),
    (
        "rate-limited but all it wanted: sleep until an attempt ends",
        (10, 10, 10),
        knowledge(),
        None,
        0.25,
        Sleep(None),
    ),
    (
        "short, the cluster holds slots: look again when they may be back",
        (1, 4, 4),
        knowledge(),
        NOW + 2.0,
        None,
        Sleep(2.0, look_again=True),
    ),
    (
        "short, held until a moment past: look again at once",
        (0, 4, 4),
        knowledge(),
        NOW - 1.0,
        None,
        Sleep(0.0, look_again=True),
    ),
    (
        "short, timer known: sleep until it",
        (1, 4, 4),
        knowledge(timer=NOW + 30.0),
        None,
        None,
        Sleep(30.0),
    ),
    (
        "short, no timer: sleep until woken",
        (0, 4, 4),
        knowledge(timer=None),
        None,
        None,
        Sleep(None),
    ),
    ("short, timer unknown: ask the database", (0, 4, 4), knowledge(known=False), None, None, None),
]


@pytest.mark.parametrize(
    ("name", "counts", "known", "held", "rate_wait", "expected"), AFTER, ids=[c[0] for c in AFTER]
)
def test_after_a_claim(
    name: str,
    counts: tuple[int, int, int],
    known: Knowledge,
    held: float | None,
    rate_wait: float | None,
    expected: Sleep | None,
) -> None:
    got, asked, wanted = counts
    assert after_claim(got, asked, wanted, known, NOW, held, rate_wait) == expected


def test_a_rate_limit_with_no_token_paces_the_lane() -> None:
    assert paced(0, 0.4) == Sleep(0.4)
    assert paced(3, 0.0) is None


HAND_OVER = {
    "idle and plain": ({}, True),
    "paused": ({"paused": True}, False),
    "stopping": ({"stopping": True}, False),
    "something waits in the queue": ({"idle": False}, False),
    "rate limited": ({"rate_limited": True}, False),
    "through agents": ({"through_agents": True}, False),
    "ordered": ({"ordered": True}, False),
    "circuit not closed": ({"circuit_closed": False}, False),
}


@pytest.mark.parametrize(("name", "case"), HAND_OVER.items(), ids=list(HAND_OVER))
def test_when_a_lane_takes_deliveries_from_the_commit(
    name: str, case: tuple[dict[str, bool], bool]
) -> None:
    changes, expected = case
    given = {
        "paused": False,
        "stopping": False,
        "idle": True,
        "rate_limited": False,
        "through_agents": False,
        "ordered": False,
        "circuit_closed": True,
    } | changes
    assert may_hand_over(**given) is expected


@pytest.mark.parametrize(
    ("failures", "storage", "expected"),
    [
        *[(1, False, 0.5), (2, False, 1.0), (4, False, 4.0), (5, False, 5.0), (40, False, 5.0)],
        *[(1, True, 0.5), (2, True, 1.0), (3, True, 1.0), (40, True, 1.0)],
    ],
)
def test_a_failing_lane_backs_off(failures: int, storage: bool, expected: float) -> None:
    assert backoff(failures, storage) == expected
