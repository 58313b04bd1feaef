"""One destination's attempts, from a claim to its recorded outcome: send (directly or
through an agent), judge (``retry.decide``), count, record, alert and log.

The lane (``scheduler.lane``) decides when to claim and how many; it hands each claim here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from relay import delivery, retry
from relay.agents import AgentHub, Returned
from relay.alerting import Alerting
from relay.clock import Clock
from relay.errors import StorageUnavailable
from relay.log import Fault
from relay.metrics import Metrics
from relay.records import AttemptRecord, Claim, EventPayload
from relay.scheduler.plan import MAX_BACKOFF
from relay.sections import DestinationConfig
from relay.store import Store

log = logging.getLogger("relay.scheduler")
# A delivered attempt is a debug line (a line per event is too dear at info); a retry is
# news at info; anything else (dead) a warning.
ATTEMPT_LOG_LEVEL = {"delivered": logging.DEBUG, "pending": logging.INFO}
MAX_RECORD_TRIES = 1000  # a record is retried this often while the database is away

Observe = Callable[[int | None, float], Awaitable[None]]  # (status, now): the circuit's


class Attempts:
    def __init__(
        self,
        destination: DestinationConfig,
        store: Store,
        metrics: Metrics,
        alerts: Alerting | None,
        clock: Clock,
        hub: AgentHub | None,
        stopping: Callable[[], bool],
    ) -> None:
        self.destination = destination
        self.name = destination.name
        self._store = store
        self._metrics = metrics
        self._alerts = alerts
        self._clock = clock
        self._hub = hub
        self._stopping = stopping
        self._outgoing = delivery.Outgoing.of(destination)
        self._session: aiohttp.ClientSession | None = None
        self._children: dict[str, Any] | None = None
        self.record_fault = Fault(log, "scheduler.record")

    def open(self) -> None:
        self._session = delivery.new_session(self.destination)

    async def close(self) -> None:
        if self._session is not None:
            await delivery.close_quietly(self._session)

    async def run(
        self, claim: Claim, payload: EventPayload | None, observe: Observe
    ) -> tuple[delivery.AttemptResult, retry.Decision]:
        """Send it and judge the answer (``observe`` feeds the circuit breaker). Raises
        ``Returned`` when it never reached the receiver (an agent gave it back)."""
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
        await observe(result.status, now)
        return result, decision

    async def settle(
        self,
        claim: Claim,
        result: delivery.AttemptResult,
        decision: retry.Decision,
        source: str,
    ) -> None:
        """Count it, record it (retrying while the database is away), alert a death, log."""
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
        alerts = self._alerts
        if alerts is not None and decision.state == "dead":
            await alerts.died(
                self.name, source, claim.event_id, error, result.status, result.excerpt
            )
        elif alerts is not None and decision.state == "pending":
            alerts.retried(self.name, source, claim.event_id, error, result.status, result.excerpt)
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
                if self.record_fault.since is not None:
                    self.record_fault.cleared(self._clock.monotonic(), destination=self.name)
                return
            except StorageUnavailable:
                failures += 1
                if self._stopping() or failures > MAX_RECORD_TRIES:
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
