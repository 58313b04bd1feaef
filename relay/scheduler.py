"""The delivery scheduler: one lane per destination, in the relay's own process.

A lane claims due deliveries up to its concurrency limit (and its rate limit, and what its
circuit breaker allows) and runs one task per attempt. A paused lane claims nothing. An
idle lane (nothing due, free slots, no rate limit, unordered, circuit closed) need not
claim at all: the commit that stores an event inserts its delivery already leased to the
lane and hands it over (``offer``/``take``, called by the store's writer), so at moderate
rates an event costs one commit and no claim.
New work wakes it at once (the store calls ``notify`` after each commit); retries wake it
on a timer set to the next due time; with nothing due it sleeps on an event and costs no
CPU. A lane never dies quietly: an error in its loop (SQLITE_BUSY, a full disk, a bug) is
logged, marks the relay not ready, and the loop backs off and tries again until it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import aiohttp

from relay import delivery, retry
from relay.circuit import Circuit
from relay.config import DestinationConfig
from relay.errors import StorageUnavailable
from relay.ids import new_event_id
from relay.log import Fault
from relay.metrics import Metrics
from relay.ratelimit import TokenBucket
from relay.store import AttemptRecord, Claim, EventPayload, NewEvent, Store

log = logging.getLogger("relay.scheduler")

LEASE_MARGIN = 30.0  # seconds a lease outlives the attempt timeout
REFILL_WAIT = 0.005  # longest a lane waits for more free slots before claiming a few
MAX_BACKOFF = 5.0  # longest pause of a failing lane (a claim every 5 s costs nothing)
ALERT_SOURCE = "_relay"  # relay's own events (alerts); no [[sources]] name can start with _


class Lane:
    """Deliveries of one destination."""

    def __init__(
        self, destination: DestinationConfig, store: Store, metrics: Metrics | None = None
    ) -> None:
        self.destination = destination
        self._metrics = metrics or Metrics()
        self._children: dict[str, Any] | None = None
        self.name = destination.name
        self._store = store
        self._outgoing = delivery.Outgoing.of(destination)
        limit = destination.rate_limit
        self._bucket = TokenBucket(limit.rate, limit.burst, time.monotonic()) if limit else None
        breaker = destination.circuit
        self.circuit = Circuit(breaker.failures, breaker.cooldown) if breaker else None
        self.paused: str | None = None  # why, when paused
        self.alerts: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()  # attempts, until their outcome is stored
        self._sending = 0  # attempts waiting for the receiver: what max_concurrency bounds
        # What the lane knows of its queue, so that a finishing attempt costs no claim and
        # no query when nothing is due (at moderate rates those were most of its SQL):
        self._news = True  # deliveries were added (or may have been) since the last claim
        self._backlog = True  # the last claim took all it asked for: more may be due
        self._timer: float | None = None  # when the next retry (or stale lease) is due
        self._timer_known = False  # False: ask the database
        self._noted: float | None = None  # retries recorded while that question was out
        self._epoch = 0  # bumped by _forget(), so an answer asked before it is not trusted
        self._rearm = False  # the timer moved earlier since the lane last looked
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self._refill_at = max(1, destination.max_concurrency // 2)
        self._hold_until: float | None = None
        self.healthy = True
        self.last_error: str | None = None
        self._fault = Fault(log, "scheduler.lane")
        self._record_fault = Fault(log, "scheduler.record")

    def notify(self) -> None:
        self._news = True
        self._wake.set()

    def offer(self, wanted: int) -> int:
        """Slots reserved for deliveries handed over by the commit that stores them: only
        when the lane is idle and plain (nothing due, no limits to apply), so they never
        overtake a waiting delivery or slip past a pause, a circuit or a rate limit."""
        if (
            self.paused is not None
            or self.stopping
            or self._news
            or self._backlog
            or self._bucket is not None
            or self.destination.ordering != "none"
            or (self.circuit is not None and self.circuit.state != "closed")
        ):
            return 0
        count = min(wanted, self.destination.max_concurrency - self._sending)
        if count <= 0:
            return 0
        self._sending += count
        return count

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def lease(self) -> float:
        return self.destination.timeout + LEASE_MARGIN

    def take(
        self, reserved: int, claims: list[Claim], payloads: Mapping[str, EventPayload]
    ) -> None:
        """Start what was handed over; free the slots of what was not."""
        self._sending -= reserved
        for claim in claims:
            self._start(claim, payloads.get(claim.event_id))
        if reserved > len(claims):
            self._nudge()

    def _forget(self) -> None:
        """After anything unexpected, trust the database, not the lane's bookkeeping."""
        self._news, self._timer_known = True, False
        self._epoch += 1

    async def run(self) -> None:
        self._session = delivery.new_session(self.destination)
        failures = 0
        while not self._stopping:
            try:
                await self._step()
            except Exception as exc:
                failures += 1
                self._forget()
                self.healthy, self.last_error = False, f"{type(exc).__name__}: {exc}"
                pause = min(MAX_BACKOFF, 0.25 * 2**failures)
                bug = None if isinstance(exc, StorageUnavailable) else exc
                self._fault.failed(self.last_error, time.monotonic(), bug, destination=self.name)
                await self._sleep(pause)
            else:
                if self._fault.since is not None:
                    self._fault.cleared(time.monotonic(), destination=self.name)
                failures = 0
                self.healthy, self.last_error = True, None

    async def _step(self) -> None:
        self._wake.clear()  # before looking, so a notify during the look is not lost
        self._rearm = False
        if self.paused is not None:
            await self._sleep(None)  # resume() wakes us
            return
        free = self.destination.max_concurrency - self._sending
        if free <= 0:
            await self._sleep(None)  # a finishing attempt wakes us
            return
        if self.circuit is not None:
            allowed = self.circuit.allowance(time.time())
            if allowed == 0:
                # Open (or a probe is out): deliveries wait without spending attempts.
                await self._sleep(self.circuit.wait(time.time()) or None)
                return
            if allowed is not None:
                free = min(free, allowed)
        now = time.time()
        due = self._timer is not None and self._timer <= now
        if not self._has_work(now):
            # Woken by a finishing attempt, and nothing is due: a claim would find nothing.
            await self._sleep(None if self._timer is None else self._timer - now)
            return
        if self._sending and free < self._refill_at:
            # Under load, claim in batches: one claim query per few deliveries, not per one.
            clock = time.monotonic()
            if self._hold_until is None:
                self._hold_until = clock + REFILL_WAIT
            if clock < self._hold_until:
                await self._sleep(self._hold_until - clock)
                return
        self._hold_until = None
        wanted = free
        if self._bucket is not None:
            free, wait = self._bucket.take_up_to(free, time.monotonic())
            if not free:
                await self._sleep(wait)  # the pace of the destination's rate limit
                return
        now = time.time()
        lease = self.lease
        self._news = False  # before the claim: a notify while it runs must count
        if due:
            self._timer_known = False  # this claim takes what was due; what next is unknown
        claims = await self._store.writer.claim(self.name, now, free, lease)
        self._backlog = len(claims) == free
        if self._bucket is not None and len(claims) < free:
            self._bucket.give_back(free - len(claims))
        if self.circuit is not None:
            self.circuit.started(len(claims))
        payloads = await self._store.load_events([c.event_id for c in claims]) if claims else {}
        for claim in claims:
            self._start(claim, payloads.get(claim.event_id))
        if len(claims) == free:
            if self._bucket is not None and free < wanted:
                # Held back by the rate limit: come back when the next token is there.
                await self._sleep(self._bucket.next_token_in(time.monotonic()))
            else:
                await self._sleep(None)  # a finishing attempt wakes us
            return
        if not self._timer_known:
            epoch, self._noted = self._epoch, None
            timer = await self._store.next_due(self.name)
            noted = self._noted  # recorded during the query, maybe after its snapshot
            if noted is not None and (timer is None or noted < timer):
                timer = noted
            self._timer, self._timer_known = timer, epoch == self._epoch
        timer = self._timer
        await self._sleep(None if timer is None else max(0.0, timer - time.time()))

    async def _sleep(self, seconds: float | None) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _start(self, claim: Claim, payload: EventPayload | None) -> None:
        self._sending += 1
        task = asyncio.create_task(self._deliver(claim, payload), name=f"deliver-{claim.id}")
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._nudge()

    def _has_work(self, now: float) -> bool:
        """Whether a claim now could find something, as far as the lane knows."""
        timer = self._timer
        return (
            self._news
            or self._backlog
            or not self._timer_known
            or (timer is not None and timer <= now)
        )

    def _nudge(self) -> None:
        """A slot came free or an attempt ended: wake the lane if that can matter to it
        (something may be due, or its timer must be set earlier). Otherwise it sleeps on:
        at moderate rates most attempts end with nothing else to do."""
        if self._rearm or self._stopping or self._has_work(time.time()):
            self._wake.set()

    async def _deliver(self, claim: Claim, payload: EventPayload | None) -> None:
        try:
            try:
                result, decision = await self._attempt(claim, payload)
            finally:
                # The receiver is done with it: its slot is free while the outcome is being
                # committed (the lease keeps the delivery from being claimed again meanwhile).
                self._sending -= 1
                self._nudge()
            await self._settle(claim, result, decision)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Recording failed (the database is down): the lease stays, and when it expires
            # the delivery is claimed again. At least once, never lost.
            self._forget()  # the next_due query will see that lease
            bug = None if isinstance(exc, StorageUnavailable) else exc
            error = f"{type(exc).__name__}: {exc}"
            self._record_fault.failed(error, time.monotonic(), bug, destination=self.name)

    async def _attempt(
        self, claim: Claim, payload: EventPayload | None
    ) -> tuple[delivery.AttemptResult, retry.Decision]:
        now = time.time()
        if payload is None:  # deleted under us (pruned by hand): nothing left to send
            result = delivery.AttemptResult(now, 0.0, None, "event no longer stored", None, None)
            return result, retry.Decision("dead", now, "event no longer stored")
        result = await self._send(payload, claim)
        now = time.time()
        decision = retry.decide(
            self.destination.retry,
            attempt=claim.attempt,
            status=result.status,
            created_at=claim.created_at,
            now=now,
            retry_after=retry.parse_retry_after(result.retry_after, now),
        )
        await self._observe(result.status, now)
        return result, decision

    async def _settle(
        self, claim: Claim, result: delivery.AttemptResult, decision: retry.Decision
    ) -> None:
        now = time.time()
        self._count(decision.state, result.duration_ms, now - claim.created_at)
        error = result.error
        if decision.reason and decision.reason != error:
            error = f"{error}; {decision.reason}" if error else decision.reason
        await self._record(
            AttemptRecord(
                delivery_id=claim.id,
                number=claim.attempt,
                started_at=result.started_at,
                duration_ms=result.duration_ms,
                status=result.status,
                error=error,
                response_excerpt=result.excerpt,
                state=decision.state,
                next_attempt_at=decision.next_attempt_at,
                finished_at=now,
            )
        )
        if decision.state == "pending":
            self._due_at(decision.next_attempt_at)
        elif self.destination.ordering != "none":
            self._news = True  # the next one of its key may be due now
        log.info(
            "delivery.attempt",
            extra={
                "fields": {
                    "event": claim.event_id,
                    "destination": self.name,
                    "attempt": claim.attempt,
                    "status": result.status,
                    "outcome": decision.state if decision.state != "pending" else "retry",
                    "ms": round(result.duration_ms, 1),
                    "error": error,
                }
            },
        )

    def _due_at(self, when: float) -> None:
        """A retry this lane recorded: its timer must not sleep past it."""
        if self._noted is None or when < self._noted:
            self._noted = when
        if self._timer_known and (self._timer is None or when < self._timer):
            self._timer = when
            self._rearm = True  # the lane may be asleep until a later time

    def _count(self, state: str, duration_ms: float, age: float) -> None:
        # Label children are looked up once per lane: .labels() on every attempt adds up.
        children = self._children
        if children is None:
            m, name = self._metrics, self.name
            children = self._children = {
                "attempt": {o: m.attempts.labels(name, o) for o in ("retry", "delivered", "dead")},
                "done": {o: m.deliveries.labels(name, o) for o in ("delivered", "dead")},
                "retries": m.retries.labels(name),
                "seconds": m.attempt_seconds.labels(name),
                "delivered": m.delivered_seconds.labels(name),
            }
        outcome = "retry" if state == "pending" else state
        children["attempt"][outcome].inc()
        children["seconds"].observe(duration_ms / 1000.0)
        if state == "pending":
            children["retries"].inc()
        else:
            children["done"][state].inc()
        if state == "delivered":
            children["delivered"].observe(max(0.0, age))

    async def _observe(self, status: int | None, now: float) -> None:
        """Feed the circuit breaker; pause the destination after a long enough outage."""
        circuit = self.circuit
        if circuit is None:
            return
        was = circuit.state
        circuit.record(status, now)
        if circuit.state != was:
            log.warning(
                "destination.circuit",
                extra={"fields": {"destination": self.name, "state": circuit.state}},
            )
        limit = self.destination.circuit.pause_after if self.destination.circuit else None
        since = circuit.failing_since
        if limit is not None and since is not None and now - since >= limit and not self.paused:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
            await self.pause(f"failing since {stamp}", automatic=True, since=since)

    async def pause(self, reason: str, automatic: bool = False, since: float | None = None) -> None:
        """Stop sending (deliveries keep queueing); kept in the database across restarts."""
        self.paused = reason
        await self._store.set_paused(self.name, True, reason)
        log.warning(
            "destination.paused",
            extra={"fields": {"destination": self.name, "reason": reason, "auto": automatic}},
        )
        alert = self.destination.circuit.alert if self.destination.circuit else None
        if automatic and alert is not None and self.alerts is not None:
            waiting = await self._store.pending_count(self.name)
            started = since if since is not None else time.time()
            iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
            await self.alerts(
                alert,
                {
                    "type": "destination.paused",
                    "text": (
                        f"relay paused destination {self.name}: failing since {iso}, "
                        f"{waiting} deliveries waiting. Resume it once it is back."
                    ),
                    "destination": self.name,
                    "since": iso,
                    "waiting": waiting,
                    "reason": reason,
                },
            )

    async def resume(self) -> None:
        self.paused = None
        self._forget()
        if self.circuit is not None:
            self.circuit.reset()
        await self._store.set_paused(self.name, False, None)
        log.info("destination.resumed", extra={"fields": {"destination": self.name}})
        self._wake.set()

    async def _record(self, record: AttemptRecord) -> None:
        """Persist an attempt's outcome, retrying while the database is unavailable.

        The receiver has already answered: giving up here would leave the lease to expire
        and send the event again. Only a stop abandons the record (the lease then covers a
        restart: at least once).
        """
        failures = 0
        while True:
            try:
                await self._store.writer.record(record)
                if self._record_fault.since is not None:
                    self._record_fault.cleared(time.monotonic(), destination=self.name)
                return
            except StorageUnavailable:
                failures += 1
                if self._stopping or failures > 1000:
                    raise
                await asyncio.sleep(min(MAX_BACKOFF, 0.05 * 2**failures))

    async def _send(self, event: EventPayload, claim: Claim) -> delivery.AttemptResult:
        """One attempt; a bug in it counts as a failed attempt, so the delivery still ends."""
        assert self._session is not None
        started = time.time()
        try:
            return await delivery.attempt(
                self._session, self.destination, event, claim, self._outgoing
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("scheduler.attempt_bug", extra={"fields": {"delivery": claim.id}})
            error = f"relay error: {type(exc).__name__}: {exc}"[:500]
            return delivery.AttemptResult(started, 0.0, None, error, None, None)

    def request_stop(self) -> None:
        """Stop claiming: run() returns after its current step."""
        self._stopping = True
        self._wake.set()

    async def drain(self, grace: float) -> None:
        """Give attempts in flight ``grace`` seconds, then cancel them (their leases stay)."""
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning(
                    "scheduler.attempts_cancelled",
                    extra={"fields": {"destination": self.name, "count": len(pending)}},
                )
        if self._session is not None:
            await delivery.close_quietly(self._session)


class Scheduler:
    """All lanes, woken by the store after each commit."""

    def __init__(
        self,
        destinations: Iterable[DestinationConfig],
        store: Store,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self.metrics = metrics or Metrics()
        self._lanes = {d.name: Lane(d, store, self.metrics) for d in destinations}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._offered: dict[str, tuple[Lane, int]] = {}  # the writer has one batch at a time
        store.add_listener(self.notify)
        store.writer.hand_off = self
        for lane in self._lanes.values():
            lane.alerts = self._alert

    async def load(self) -> None:
        """Apply pauses kept in the database, then each destination's ``paused`` switch."""
        stored = await self._store.paused_destinations()
        for name, lane in self._lanes.items():
            switch = lane.destination.paused
            if switch is True:
                lane.paused = "paused in the config"
            elif switch is None and name in stored:
                lane.paused = stored[name] or "paused"
            elif switch is False and name in stored:
                await self._store.set_paused(name, False, None)
            if lane.paused:
                log.warning(
                    "destination.paused",
                    extra={"fields": {"destination": name, "reason": lane.paused}},
                )

    async def pause(self, name: str, reason: str = "paused by an operator") -> None:
        await self._lanes[name].pause(reason)

    async def resume(self, name: str) -> None:
        await self._lanes[name].resume()

    def lane(self, name: str) -> Lane:
        return self._lanes[name]

    async def send_alert(self, destination: str, payload: dict[str, Any]) -> None:
        await self._alert(destination, payload)

    async def _alert(self, destination: str, payload: dict[str, Any]) -> None:
        """An alert is an event of relay's own (source ``_relay``), so it is stored,
        retried and visible like any other."""
        now = time.time()
        event = NewEvent(
            id=new_event_id(now),
            source=ALERT_SOURCE,
            received_at=now,
            idempotency_key=None,
            event_type=str(payload.get("type")),
            content_type="application/json",
            remote_addr=None,
            headers=json.dumps([["Content-Type", "application/json"]]),
            body=json.dumps(payload).encode(),
            destinations=(destination,),
        )
        try:
            await self._store.writer.ingest(event)
        except StorageUnavailable:
            log.error("destination.alert_failed", extra={"fields": {"to": destination}})

    def offer(self, wanted: Mapping[str, int]) -> dict[str, tuple[int, float]]:
        """See store.Writer._commit: idle lanes reserve slots for a batch's deliveries."""
        self._offered = {}
        for name, count in wanted.items():
            lane = self._lanes.get(name)
            reserved = lane.offer(count) if lane is not None else 0
            if lane is not None and reserved:
                self._offered[name] = (lane, reserved)
        return {name: (n, lane.lease) for name, (lane, n) in self._offered.items()}

    def take(self, leased: Mapping[str, list[Claim]], payloads: Mapping[str, EventPayload]) -> None:
        offered, self._offered = self._offered, {}
        for name, (lane, reserved) in offered.items():
            claims = leased.get(name, [])
            if lane.stopping and claims:  # replaced by a reload meanwhile
                # Its lease expires and the new lane claims it: late, never lost.
                lane.take(reserved, [], payloads)
                new = self._lanes.get(name)
                if new is not None:
                    new.notify()
                continue
            lane.take(reserved, claims, payloads)

    def notify(self, destinations: Iterable[str]) -> None:
        for name in destinations:
            lane = self._lanes.get(name)
            if lane is not None:
                lane.notify()

    def start(self) -> None:
        self._tasks = {
            name: asyncio.create_task(lane.run(), name=f"lane-{name}")
            for name, lane in self._lanes.items()
        }

    @property
    def lanes(self) -> dict[str, Lane]:
        return dict(self._lanes)

    async def update(self, destinations: Iterable[DestinationConfig], grace: float) -> None:
        """A reloaded config: new lanes for new or changed destinations, old ones stopped
        (their attempts in flight finish within ``grace``; their leases cover the rest)."""
        wanted = {d.name: d for d in destinations}
        retired: list[Lane] = []
        for name, lane in list(self._lanes.items()):
            if wanted.get(name) != lane.destination:
                lane.request_stop()
                retired.append(lane)
                del self._lanes[name]
        for name, config in wanted.items():
            if name in self._lanes:
                continue
            lane = Lane(config, self._store, self.metrics)
            lane.alerts = self._alert
            old = next((r for r in retired if r.name == name), None)
            if config.paused is True:
                lane.paused = "paused in the config"
            elif config.paused is None and old is not None:
                lane.paused = old.paused
            elif config.paused is False and old is not None and old.paused:
                await self._store.set_paused(name, False, None)
            self._lanes[name] = lane
            self._tasks[name] = asyncio.create_task(lane.run(), name=f"lane-{name}")
        for lane in retired:
            self._retiring.add(asyncio.create_task(lane.drain(grace)))
        self._retiring = {t for t in self._retiring if not t.done()}

    @property
    def healthy(self) -> bool:
        running = all(not t.done() for n, t in self._tasks.items() if n in self._lanes)
        return running and all(lane.healthy for lane in self._lanes.values())

    def problems(self) -> list[str]:
        return [f"{n}: {lane.last_error}" for n, lane in self._lanes.items() if not lane.healthy]

    async def stop(self, grace: float) -> None:
        """Stop claiming everywhere, then let each lane's attempts finish within ``grace``."""
        for lane in self._lanes.values():
            lane.request_stop()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await asyncio.gather(*(lane.drain(grace) for lane in self._lanes.values()))
        await asyncio.gather(*self._retiring, return_exceptions=True)
