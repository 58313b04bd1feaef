"""What a lane does next, as pure functions: ``plan(state, now, clock) -> Sleep | Claim``.

A lane (``relay.scheduler.lane``) delivers one destination's events. Each time it wakes it
looks at what it knows and either claims due deliveries or sleeps, until a timer or until
something wakes it. That decision lives here, with no I/O and the clocks passed in, so it
is tested as a table (``tests/test_plan.py``), like ``retry``, ``circuit`` and
``ratelimit``.

``Knowledge`` is what a lane knows of its queue in the database, kept up to date by what
it does, so that a finishing attempt costs no claim and no query when nothing can be due
(at moderate rates those were most of its SQL). When in doubt (after an error, a resume)
it forgets, and the next step asks the database.
"""

from __future__ import annotations

from dataclasses import dataclass

REFILL_WAIT = 0.005  # longest a busy lane waits for more free slots before claiming a few


class Knowledge:
    """What a lane knows of its queue. Plain bookkeeping, no I/O."""

    def __init__(self) -> None:
        self.news = True  # deliveries were added (or may have been) since the last claim
        self.backlog = True  # the last claim took all it asked for: more may be due
        self.timer: float | None = None  # when the next retry (or stale lease) is due
        self.timer_known = False  # False: ask the database
        self.rearm = False  # the timer moved earlier since the lane last looked
        self._noted: float | None = None  # retries recorded while the timer was asked for
        self._epoch = 0  # bumped by forget(), so an answer asked before it is not trusted

    def has_work(self, now: float) -> bool:
        """Whether a claim now could find something, as far as the lane knows."""
        timer = self.timer
        return (
            self.news
            or self.backlog
            or not self.timer_known
            or (timer is not None and timer <= now)
        )

    def wake_for(self, now: float) -> bool:
        """Whether a finished attempt (or a freed slot) should wake the sleeping lane."""
        return self.rearm or self.has_work(now)

    @property
    def idle(self) -> bool:
        """Nothing is known to be waiting: new deliveries may be handed over directly."""
        return not self.news and not self.backlog

    def notify(self) -> None:
        """Deliveries were committed for this destination."""
        self.news = True

    def forget(self) -> None:
        """After anything unexpected, trust the database, not this bookkeeping."""
        self.news, self.timer_known = True, False
        self._epoch += 1

    def claiming(self, due: bool) -> None:
        """A claim is about to run (a notify while it runs must count as news again)."""
        self.news = False
        if due:
            self.timer_known = False  # it takes what was due; what is next is unknown

    def claimed(self, got: int, asked: int) -> None:
        self.backlog = got == asked

    def asking(self) -> int:
        """The lane asks the database for its next due time; pass the token to answer()."""
        self._noted = None
        return self._epoch

    def answer(self, token: int, timer: float | None) -> None:
        """The database's answer; a retry recorded meanwhile may be earlier."""
        noted = self._noted
        if noted is not None and (timer is None or noted < timer):
            timer = noted
        self.timer, self.timer_known = timer, token == self._epoch

    def retry_at(self, when: float) -> None:
        """The lane recorded a retry due at ``when``: its timer must not sleep past it."""
        if self._noted is None or when < self._noted:
            self._noted = when
        if self.timer_known and (self.timer is None or when < self.timer):
            self.timer = when
            self.rearm = True  # the lane may be asleep until a later time


@dataclass(frozen=True, slots=True)
class LaneState:
    """What the plan looks at, gathered by the lane just before it decides."""

    paused: bool
    free: int  # concurrency slots free
    sending: int  # attempts waiting for the receiver
    refill_at: int  # under load, wait to claim until this many slots are free
    allowance: int | None  # what the circuit breaker allows now (None: no limit)
    circuit_wait: float | None  # with allowance 0: seconds until it may allow again
    known: Knowledge
    hold_until: float | None  # a batching wait in progress, on the monotonic clock


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float | None  # None: until something wakes the lane
    hold_until: float | None = None  # the batching wait to remember
    look_again: bool = False  # the queue is not known to be empty: the next wake claims


@dataclass(frozen=True, slots=True)
class Claim:
    limit: int
    due: bool  # the lane's timer had come: the claim takes what was due


def plan(s: LaneState, now: float, clock: float) -> Sleep | Claim:
    """``now``: wall-clock seconds (due times are stored so); ``clock``: monotonic."""
    if s.paused or s.free <= 0:
        return Sleep(None, s.hold_until)  # resume(), or a finishing attempt, wakes it
    free = s.free
    if s.allowance is not None:
        if s.allowance == 0:  # open, or a probe is out: deliveries wait, spending nothing
            return Sleep(s.circuit_wait or None, s.hold_until)
        free = min(free, s.allowance)
    known = s.known
    if not known.has_work(now):  # a claim would find nothing
        timer = known.timer
        return Sleep(None if timer is None else timer - now, s.hold_until)
    if s.sending and free < s.refill_at:
        # Under load, claim in batches: one claim query per few deliveries, not per one.
        hold = s.hold_until if s.hold_until is not None else clock + REFILL_WAIT
        if clock < hold:
            return Sleep(hold - clock, hold)
    timer = known.timer
    return Claim(free, due=timer is not None and timer <= now)


def paced(taken: int, wait: float) -> Sleep | None:
    """After taking tokens from the destination's rate limit: none taken, sleep until the
    next one (the limit's pace); else claim what was taken."""
    return Sleep(wait) if taken == 0 else None


def after_claim(
    got: int,
    asked: int,
    wanted: int,
    known: Knowledge,
    now: float,
    held_until: float | None,
    rate_wait: float | None,
) -> Sleep | None:
    """What a lane does once a claim of ``asked`` (of ``wanted``, before the rate limit)
    returned ``got``: sleep, or None: its timer is not known, so it asks the database
    when the next delivery is due and then sleeps until then (``until_timer``).

    ``held_until``: when the store says the cluster may give slots or tokens back (only
    asked when the claim came back short); ``rate_wait``: seconds to the rate limit's
    next token (None without one)."""
    if got < asked and held_until is not None:
        # Other relays hold the destination's slots or tokens: look again when the store
        # says they may be back (or when an attempt of ours ends).
        return Sleep(max(0.0, held_until - now), look_again=True)
    if got == asked:
        if rate_wait is not None and asked < wanted:
            return Sleep(rate_wait)  # held back by the rate limit: back at the next token
        return Sleep(None)  # all it asked for: a finishing attempt wakes it
    if not known.timer_known:
        return None
    return until_timer(known, now)


def until_timer(known: Knowledge, now: float) -> Sleep:
    """Sleep until the next retry or stale lease is due (for ever, with none)."""
    timer = known.timer
    return Sleep(None if timer is None else max(0.0, timer - now))


def may_hand_over(
    *,
    paused: bool,
    stopping: bool,
    idle: bool,
    rate_limited: bool,
    through_agents: bool,
    ordered: bool,
    circuit_closed: bool,
) -> bool:
    """Whether a lane may take deliveries straight from the commit that stores them: only
    when idle and plain (nothing due, no limits to apply), so they never overtake a waiting
    delivery or slip past a pause, a circuit or a rate limit."""
    return (
        idle
        and circuit_closed
        and not (paused or stopping or rate_limited or through_agents or ordered)
    )


MAX_BACKOFF = 5.0  # longest pause of a failing lane (a claim every 5 s costs nothing)
# … when the database is what fails: a look a second costs little (the store refuses at once
# while the server is away) and the lane is ready within a second of the database's return.
MAX_STORAGE_BACKOFF = 1.0


def backoff(failures: int, storage: bool) -> float:
    """How long a lane whose step failed ``failures`` times in a row waits: doubling from
    0.5 s, up to ``MAX_BACKOFF`` (``MAX_STORAGE_BACKOFF`` when the database is away)."""
    return min(MAX_STORAGE_BACKOFF if storage else MAX_BACKOFF, 0.25 * 2.0**failures)


def waiting(
    state: LaneState,
    *,
    max_concurrency: int,
    group: str | None,
    rate_wait: float,
    cluster_wait: float | None,
) -> str | None:
    """Why a due delivery of this lane is not being sent now, in words for the console (a
    delivery overdue by minutes said "in 0 s"); None when nothing holds it back."""
    if state.paused:
        return "the destination is paused"
    if state.allowance == 0:
        after = f"; it tries again in {state.circuit_wait:.0f} s" if state.circuit_wait else ""
        return f"its circuit is open after repeated failures{after}"
    if state.free <= 0:
        if group and state.sending < max_concurrency:
            return f"no agent of {group} is connected (or all of them are busy)"
        return f"all {max_concurrency} of its slots are busy (max_concurrency)"
    if rate_wait > 0:
        return f"its rate limit holds it back ({rate_wait:.1f} s to the next token)"
    if cluster_wait is not None and cluster_wait > 0:
        return "the cluster's limits hold it back (other relays hold its leases or tokens)"
    return None
