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

from relay.agents import AgentHub, Returned
from relay.alerting import Alerting
from relay.circuit import Circuit
from relay.clock import Clock
from relay.errors import StorageUnavailable
from relay.log import Fault, brief
from relay.metrics import Metrics
from relay.ratelimit import TokenBucket
from relay.records import Action, Claim, EventPayload, Limits
from relay.scheduler import cluster, plan
from relay.scheduler.attempt import Attempts
from relay.sections import DestinationConfig
from relay.store import Store

log = logging.getLogger("relay.scheduler")

LEASE_MARGIN = 30.0  # seconds a lease outlives the attempt timeout (storage.lease_margin)


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
        self.name = destination.name
        self._store = store
        self._attempts = Attempts(
            destination,
            store,
            metrics or Metrics(),
            alerts,
            self._clock,
            self._hub,
            lambda: self._stopping,
        )
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
        self.shared_circuit: cluster.Shared = ("closed", None)  # as last shared
        self.paused: str | None = None  # why, when paused
        self._alerts = alerts
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()  # attempts, until their outcome is stored
        self._sending = 0  # attempts waiting for the receiver: what max_concurrency bounds
        self._known = plan.Knowledge()  # what the lane knows of its queue
        self.looks = 0  # decisions that ended in a sleep
        self._stopping = False
        self._refill_at = max(1, destination.max_concurrency // 2)
        self._hold_until: float | None = None
        self.healthy = True
        self.last_error: str | None = None
        self._fault = Fault(log, "scheduler.lane")

    def notify(self) -> None:
        self._known.notify()
        self._wake.set()

    def offer(self, wanted: int) -> int:
        """Slots reserved for deliveries handed over by the commit that stores them, when
        the lane may take them so (``plan.may_hand_over``)."""
        if not plan.may_hand_over(
            paused=self.paused is not None,
            stopping=self.stopping,
            idle=self._known.idle,
            rate_limited=self._bucket is not None,
            through_agents=self._hub is not None,
            ordered=self.destination.ordering != "none",
            circuit_closed=self.circuit is None or self.circuit.state == "closed",
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
        self._attempts.open()
        failures = 0
        while not self._stopping:
            try:
                await self._step()
            except Exception as exc:
                failures += 1
                self._known.forget()
                self.healthy, self.last_error = False, brief(f"{type(exc).__name__}: {exc}")
                bug = None if isinstance(exc, StorageUnavailable) else exc
                pause = plan.backoff(failures, storage=bug is None)
                self._fault.failed(
                    self.last_error, self._clock.monotonic(), bug, destination=self.name
                )
                await self._sleep(pause)
            else:
                if self._fault.since is not None:
                    self._fault.cleared(self._clock.monotonic(), destination=self.name)
                failures = 0
                self.healthy, self.last_error = True, None

    def _state(self) -> plan.LaneState:
        circuit = self.circuit
        allowance = circuit.allowance(self._clock.time()) if circuit is not None else None
        return plan.LaneState(
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
        return plan.waiting(
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
        action = plan.plan(self._state(), self._clock.time(), self._clock.monotonic())
        if isinstance(action, plan.Sleep):
            self._hold_until = action.hold_until
            await self._sleep(action.seconds)
            return
        self._hold_until = None
        free = wanted = action.limit
        bucket = self._bucket
        if bucket is not None:
            free, wait = bucket.take_up_to(free, self._clock.monotonic())
            if (paced := plan.paced(free, wait)) is not None:
                await self._sleep(paced.seconds)
                return
        known.claiming(action.due)
        now = self._clock.time()
        claims = await self._store.claim(self.name, now, free, self.lease, self._limits)
        known.claimed(len(claims), free)
        if bucket is not None and len(claims) < free:
            bucket.give_back(free - len(claims))
        if self.circuit is not None:
            self.circuit.started(len(claims))
        payloads = await self._store.load_events([c.event_id for c in claims]) if claims else {}
        for claim in claims:
            self._start(claim, payloads.get(claim.event_id))
        after = plan.after_claim(
            len(claims),
            free,
            wanted,
            known,
            now,
            held_until=self._store.held(self.name) if len(claims) < free else None,
            rate_wait=bucket.next_token_in(self._clock.monotonic()) if bucket else None,
        )
        if after is None:  # when is the next one due? the database knows
            token = known.asking()
            known.answer(token, await self._store.next_due(self.name))
            after = plan.until_timer(known, self._clock.time())
        if after.look_again:
            known.notify()
        await self._sleep(after.seconds)

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
                result, decision = await self._attempts.run(claim, payload, self._observe)
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
            await self._attempts.settle(claim, result, decision, payload.source if payload else "")
            if decision.state == "pending":
                self._known.retry_at(decision.next_attempt_at)
            elif self.destination.ordering != "none":
                self._known.notify()  # the next one of its key may be due now
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Recording failed (the database is down): the lease stays, and when it expires
            # the delivery is claimed again. At least once, never lost.
            self._known.forget()  # the next_due query will see that lease
            bug = None if isinstance(exc, StorageUnavailable) else exc
            error = f"{type(exc).__name__}: {exc}"
            fault = self._attempts.record_fault
            fault.failed(error, self._clock.monotonic(), bug, destination=self.name)

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
        self.shared_circuit = await cluster.share(
            self._store, self.name, self.circuit, self.shared_circuit
        )

    def adopt(self, paused: str | None, circuit: cluster.Remote | None) -> None:
        """What another relay on the database changed: a pause or resume, a circuit that
        opened or closed there (``cluster.adoption`` decides)."""
        change = cluster.adoption(
            paused=self.paused,
            pinned=self.destination.paused is True,
            remote_paused=paused,
            shared=self.shared_circuit,
            circuit=self.circuit.state if self.circuit is not None else None,
            remote_circuit=circuit,
        )
        if change.pause is not None:
            self.paused = change.pause
            log.warning(
                "destination.paused",
                extra={"fields": {"destination": self.name, "reason": paused, "by": "cluster"}},
            )
        if change.resume:
            self.paused = None
            self._known.forget()
            if self.circuit is not None:
                self.circuit.reset()
            log.info("destination.resumed", extra={"fields": {"destination": self.name}})
            self._wake.set()
        if change.shared is not None:
            self.shared_circuit = change.shared
        if change.trip is not None and self.circuit is not None:
            self.circuit.trip(*change.trip)
            log.warning(
                "destination.circuit",
                extra={"fields": {"destination": self.name, "state": "open", "by": "cluster"}},
            )
        elif change.close and self.circuit is not None:
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
            await self._alerts.paused(self.name, started, waiting, reason, alert)

    async def resume(self) -> None:
        self.paused = None
        self._known.forget()
        if self.circuit is not None:
            self.circuit.reset()
            await self._share_circuit()
        await self._store.set_paused(self.name, False, None)
        log.info("destination.resumed", extra={"fields": {"destination": self.name}})
        self._wake.set()

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
        await self._attempts.close()
