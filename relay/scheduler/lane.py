"""A lane: the deliveries of one destination, in the relay's own process.

A lane claims due deliveries up to its concurrency limit (and its rate limit, and what its
circuit breaker allows) and runs one task per attempt. A paused lane claims nothing. An
idle lane (nothing due, free slots, no rate limit, unordered, circuit closed) need not
claim at all: the commit that stores an event inserts its delivery already leased to the
lane and hands it over (``offer``/``take``, called by the store's writer), so at moderate
rates an event costs one commit and no claim.

What to do next is decided by ``relay.scheduler.plan`` (pure, table-tested); this module
carries it out. New work wakes the lane at once (``notify`` after each commit); retries wake
it on a timer set to the next due time; with nothing due it sleeps on an event and costs
no CPU. A lane never dies quietly: an error in its loop (SQLITE_BUSY, a full disk, a bug) is
logged, marks the relay not ready, and the loop backs off and tries again until it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from relay import delivery, retry
from relay.agents import AgentHub, Returned
from relay.alerting import Alerting
from relay.circuit import Circuit
from relay.clock import Clock
from relay.errors import StorageUnavailable
from relay.log import Fault, brief
from relay.metrics import Metrics
from relay.ratelimit import TokenBucket
from relay.records import Action, AttemptRecord, Claim, EventPayload, Limits
from relay.scheduler.plan import Knowledge, LaneState, Sleep, plan
from relay.scheduler.plan import waiting as plan_waiting
from relay.sections import DestinationConfig
from relay.store import Store
from relay.text import plural

log = logging.getLogger("relay.scheduler")
# A delivered attempt is a debug line (a line per event is too dear at info); a retry is
# news at info; anything else (dead) a warning.
ATTEMPT_LOG_LEVEL = {"delivered": logging.DEBUG, "pending": logging.INFO}

LEASE_MARGIN = 30.0  # seconds a lease outlives the attempt timeout (storage.lease_margin)
MAX_BACKOFF = 5.0  # longest pause of a failing lane (a claim every 5 s costs nothing)
# … when the database is what fails: a look a second costs little (the store refuses at once
# while the server is away) and the lane is ready within a second of the database's return.
MAX_STORAGE_BACKOFF = 1.0


class Lane:
    """Deliveries of one destination."""

    def __init__(
        self,
        destination: DestinationConfig,
        store: Store,
        metrics: Metrics | None = None,
        alerts: Alerting | None = None,
        clock: Clock | None = None,
        hub: AgentHub | None = None,
        lease_margin: float = LEASE_MARGIN,
    ) -> None:
        self._hub = hub if destination.agent is not None else None
        self._lease_margin = lease_margin
        self._clock = clock or Clock()
        self.destination = destination
        self._metrics = metrics or Metrics()
        self._children: dict[str, Any] | None = None
        self.name = destination.name
        self._store = store
        self._outgoing = delivery.Outgoing.of(destination)
        limit = destination.rate_limit
        self._bucket = (
            TokenBucket(limit.rate, limit.burst, self._clock.monotonic()) if limit else None
        )
        # On a database shared by several relays the store applies the limits to all of
        # them (each claim counts the cluster's leases and takes from a shared bucket).
        self._limits = (
            Limits(destination.max_concurrency, limit.rate, limit.burst)
            if store.shared and limit
            else Limits(destination.max_concurrency)
            if store.shared
            else None
        )
        breaker = destination.circuit
        self.circuit = Circuit(breaker.failures, breaker.cooldown) if breaker else None
        self.shared_circuit: tuple[str, float | None] = ("closed", None)  # as last shared
        self.paused: str | None = None  # why, when paused
        self._alerts = alerts
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()  # attempts, until their outcome is stored
        self._sending = 0  # attempts waiting for the receiver: what max_concurrency bounds
        self._known = Knowledge()  # what the lane knows of its queue (relay.scheduler.plan)
        self.looks = 0  # decisions that ended in a sleep
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self._refill_at = max(1, destination.max_concurrency // 2)
        self._hold_until: float | None = None
        self.healthy = True
        self.last_error: str | None = None
        self._fault = Fault(log, "scheduler.lane")
        self._record_fault = Fault(log, "scheduler.record")

    def notify(self) -> None:
        self._known.notify()
        self._wake.set()

    def offer(self, wanted: int) -> int:
        """Slots reserved for deliveries handed over by the commit that stores them: only
        when the lane is idle and plain (nothing due, no limits to apply), so they never
        overtake a waiting delivery or slip past a pause, a circuit or a rate limit."""
        if (
            self.paused is not None
            or self.stopping
            or not self._known.idle
            or self._bucket is not None
            or self._hub is not None
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
        return self.destination.timeout + self._lease_margin

    def take(
        self, reserved: int, claims: list[Claim], payloads: Mapping[str, EventPayload]
    ) -> None:
        """Start what was handed over; free the slots of what was not."""
        self._sending -= reserved
        for claim in claims:
            self._start(claim, payloads.get(claim.event_id))
        if reserved > len(claims):
            self._nudge()

    async def run(self) -> None:
        self._session = delivery.new_session(self.destination)
        failures = 0
        while not self._stopping:
            try:
                await self._step()
            except Exception as exc:
                failures += 1
                self._known.forget()
                self.healthy, self.last_error = False, brief(f"{type(exc).__name__}: {exc}")
                bug = None if isinstance(exc, StorageUnavailable) else exc
                pause = min(MAX_BACKOFF if bug else MAX_STORAGE_BACKOFF, 0.25 * 2**failures)
                self._fault.failed(
                    self.last_error, self._clock.monotonic(), bug, destination=self.name
                )
                await self._sleep(pause)
            else:
                if self._fault.since is not None:
                    self._fault.cleared(self._clock.monotonic(), destination=self.name)
                failures = 0
                self.healthy, self.last_error = True, None

    def _state(self) -> LaneState:
        circuit = self.circuit
        allowance = circuit.allowance(self._clock.time()) if circuit is not None else None
        return LaneState(
            paused=self.paused is not None,
            free=self._free(),
            sending=self._sending,
            refill_at=self._refill_at,
            allowance=allowance,
            circuit_wait=circuit.wait(self._clock.time())
            if circuit is not None and allowance == 0
            else None,
            known=self._known,
            hold_until=self._hold_until,
        )

    def waiting(self) -> str | None:
        """Why a due delivery is not being sent now (``plan.waiting``), for the console."""
        now = self._clock.monotonic()
        rate_wait = self._bucket.next_token_in(now) if self._bucket is not None else 0.0
        held = self._store.held(self.name)
        return plan_waiting(
            self._state(),
            max_concurrency=self.destination.max_concurrency,
            group=self.destination.agent,
            rate_wait=rate_wait,
            cluster_wait=held - self._clock.time() if held is not None else None,
        )

    def _free(self) -> int:
        """Slots free: the destination's concurrency, and through an agent group no more
        than its connected agents take (none while it is offline: deliveries wait then,
        spending no attempts, and a connecting agent wakes the lane)."""
        free = self.destination.max_concurrency - self._sending
        if self._hub is not None:
            free = min(free, self._hub.free(self.name_of_group))
        return free

    @property
    def name_of_group(self) -> str:
        return self.destination.agent or ""

    async def _step(self) -> None:
        """One decision (relay.scheduler.plan) and what it takes to carry it out."""
        self._wake.clear()  # before looking, so a notify during the look is not lost
        known = self._known
        known.rearm = False
        action = plan(self._state(), self._clock.time(), self._clock.monotonic())
        if isinstance(action, Sleep):
            self._hold_until = action.hold_until
            await self._sleep(action.seconds)
            return
        self._hold_until = None
        free = wanted = action.limit
        if self._bucket is not None:
            free, wait = self._bucket.take_up_to(free, self._clock.monotonic())
            if not free:
                await self._sleep(wait)  # the pace of the destination's rate limit
                return
        known.claiming(action.due)
        now = self._clock.time()
        claims = await self._store.claim(self.name, now, free, self.lease, self._limits)
        known.claimed(len(claims), free)
        if self._bucket is not None and len(claims) < free:
            self._bucket.give_back(free - len(claims))
        if self.circuit is not None:
            self.circuit.started(len(claims))
        payloads = await self._store.load_events([c.event_id for c in claims]) if claims else {}
        for claim in claims:
            self._start(claim, payloads.get(claim.event_id))
        held = self._store.held(self.name) if len(claims) < free else None
        if held is not None:
            # Other relays hold the destination's slots or tokens: look again when the
            # store says they may be back (or when an attempt of ours ends).
            known.notify()
            await self._sleep(max(0.0, held - now))
            return
        if len(claims) == free:
            if self._bucket is not None and free < wanted:
                # Held back by the rate limit: come back when the next token is there.
                await self._sleep(self._bucket.next_token_in(self._clock.monotonic()))
            else:
                await self._sleep(None)  # a finishing attempt wakes us
            return
        if not known.timer_known:
            token = known.asking()
            known.answer(token, await self._store.next_due(self.name))
        timer = known.timer
        await self._sleep(None if timer is None else max(0.0, timer - self._clock.time()))

    @property
    def in_flight(self) -> int:
        """Attempts started and not yet recorded."""
        return len(self._inflight)

    async def _sleep(self, seconds: float | None) -> None:
        self.looks += 1  # a look at the queue ended here: tests wait on this, not on time
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

    def _nudge(self) -> None:
        """A slot came free or an attempt ended: wake the lane if that can matter to it
        (something may be due, or its timer must be set earlier). Otherwise it sleeps on:
        at moderate rates most attempts end with nothing else to do."""
        if self._stopping or self._known.wake_for(self._clock.time()):
            self._wake.set()

    async def _deliver(self, claim: Claim, payload: EventPayload | None) -> None:
        try:
            try:
                result, decision = await self._attempt(claim, payload)
            except Returned as exc:
                # It never got to the receiver: the lease goes back, the attempt does not
                # count, and the lane looks again (when an agent can take it).
                await self._store.release(claim, self._clock.time())
                self._known.notify()
                self._wake.set()
                fields = {"delivery": claim.id, "destination": self.name, "why": str(exc)}
                log.info("delivery.returned", extra={"fields": fields})
                return
            finally:
                # The receiver is done with it: its slot is free while the outcome is being
                # committed (the lease keeps the delivery from being claimed again meanwhile).
                self._sending -= 1
                self._nudge()
            await self._settle(claim, result, decision, payload.source if payload else "")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Recording failed (the database is down): the lease stays, and when it expires
            # the delivery is claimed again. At least once, never lost.
            self._known.forget()  # the next_due query will see that lease
            bug = None if isinstance(exc, StorageUnavailable) else exc
            error = f"{type(exc).__name__}: {exc}"
            self._record_fault.failed(error, self._clock.monotonic(), bug, destination=self.name)

    async def _attempt(
        self, claim: Claim, payload: EventPayload | None
    ) -> tuple[delivery.AttemptResult, retry.Decision]:
        now = self._clock.time()
        if payload is None:  # deleted under us (pruned by hand): nothing left to send
            result = delivery.AttemptResult(now, 0.0, None, "event no longer stored", None, None)
            return result, retry.Decision("dead", now, "event no longer stored")
        result = await self._send(payload, claim)
        now = self._clock.time()
        if result.permanent:  # refused before it was sent: trying again cannot help
            return result, retry.Decision("dead", now, result.error or "refused")
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
        self,
        claim: Claim,
        result: delivery.AttemptResult,
        decision: retry.Decision,
        source: str,
    ) -> None:
        now = self._clock.time()
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
                response_headers=result.headers,
                state=decision.state,
                next_attempt_at=decision.next_attempt_at,
                finished_at=now,
                lease=claim.lease,
                strict=self.destination.agent is not None,
            )
        )
        if decision.state == "dead" and self._alerts is not None:
            await self._alerts.died(self.name, source, claim.event_id, error)
        if decision.state == "pending":
            self._known.retry_at(decision.next_attempt_at)
        elif self.destination.ordering != "none":
            self._known.notify()  # the next one of its key may be due now
        level = ATTEMPT_LOG_LEVEL.get(decision.state, logging.WARNING)
        if not log.isEnabledFor(level):
            return
        log.log(
            level,
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
            await self._share_circuit()
        limit = self.destination.circuit.pause_after if self.destination.circuit else None
        since = circuit.failing_since
        if limit is not None and since is not None and now - since >= limit and not self.paused:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
            await self.pause(f"failing since {stamp}", automatic=True, since=since)

    async def _share_circuit(self) -> None:
        """Tell the other relays on the database that this circuit opened or closed."""
        circuit = self.circuit
        if circuit is None or not self._store.shared or circuit.state == "half-open":
            return
        shared = (circuit.state, circuit.opened_at)
        if shared == self.shared_circuit:
            return
        self.shared_circuit = shared
        with contextlib.suppress(StorageUnavailable):
            await self._store.set_circuit(
                self.name, circuit.state, circuit.opened_at, circuit.failing_since
            )

    def adopt(
        self, paused: str | None, circuit: tuple[str, float | None, float | None] | None
    ) -> None:
        """What another relay on the database changed: a pause or resume, a circuit that
        opened or closed there."""
        config_paused = self.destination.paused is True
        if paused is not None and self.paused is None and not config_paused:
            self.paused = paused
            log.warning(
                "destination.paused",
                extra={"fields": {"destination": self.name, "reason": paused, "by": "cluster"}},
            )
        elif paused is None and self.paused is not None and not config_paused:
            self.paused = None
            self._known.forget()
            if self.circuit is not None:
                self.circuit.reset()
            self.shared_circuit = ("closed", None)
            log.info("destination.resumed", extra={"fields": {"destination": self.name}})
            self._wake.set()
        if circuit is None or self.circuit is None:
            return
        state, opened_at, failing_since = circuit
        if (state, opened_at) == self.shared_circuit:
            return
        self.shared_circuit = (state, opened_at)
        if state == "open" and opened_at is not None and self.circuit.state == "closed":
            self.circuit.trip(opened_at, failing_since)
            log.warning(
                "destination.circuit",
                extra={"fields": {"destination": self.name, "state": "open", "by": "cluster"}},
            )
        elif state == "closed" and self.circuit.state != "closed":
            self.circuit.reset()
            self._known.forget()
            self._wake.set()

    async def pause(self, reason: str, automatic: bool = False, since: float | None = None) -> None:
        """Stop sending (deliveries keep queueing); kept in the database across restarts."""
        self.paused = reason
        await self._store.set_paused(self.name, True, reason)
        log.warning(
            "destination.paused",
            extra={"fields": {"destination": self.name, "reason": reason, "auto": automatic}},
        )
        if automatic:
            action = Action("relay", None, "pause", self.name, {"reason": reason})
            with contextlib.suppress(StorageUnavailable):
                await self._store.audit(action, {"paused": True}, self._clock.time())
        alert = self.destination.circuit.alert if self.destination.circuit else None
        if automatic and self._alerts is not None:
            waiting = await self._store.pending_count(self.name)
            started = since if since is not None else self._clock.time()
            iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
            await self._alerts.paused(
                self.name,
                {
                    "type": "destination.paused",
                    "text": (
                        f"relay paused destination {self.name}: failing since {iso}, "
                        f"{plural(waiting, 'delivery', 'deliveries')} waiting. Resume it "
                        "once it is back."
                    ),
                    "destination": self.name,
                    "since": iso,
                    "waiting": waiting,
                    "reason": reason,
                },
                alert,
            )

    async def resume(self) -> None:
        self.paused = None
        self._known.forget()
        if self.circuit is not None:
            self.circuit.reset()
            await self._share_circuit()
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
                await self._store.record(record)
                if self._record_fault.since is not None:
                    self._record_fault.cleared(self._clock.monotonic(), destination=self.name)
                return
            except StorageUnavailable:
                failures += 1
                if self._stopping or failures > 1000:
                    raise
                await asyncio.sleep(min(MAX_BACKOFF, 0.05 * 2**failures))

    async def _send(self, event: EventPayload, claim: Claim) -> delivery.AttemptResult:
        """One attempt; a bug in it counts as a failed attempt, so the delivery still ends."""
        assert self._session is not None
        started = self._clock.time()
        try:
            if self._hub is not None:
                return await self._hub.attempt(self.destination, event, claim, self._outgoing)
            return await delivery.attempt(
                self._session, self.destination, event, claim, self._outgoing
            )
        except (asyncio.CancelledError, Returned):
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
