"""A circuit breaker per destination. Pure: it is told outcomes and the time, and answers
how many attempts may start.

closed:    send freely; ``failures`` consecutive failed attempts open it.
open:      send nothing: waiting deliveries wait, without spending their attempts.
half-open: after ``cooldown``, one probe delivery goes; success closes the circuit,
           failure opens it for another cooldown.

A failure is an attempt with no response or a 5xx: the service is down. A 4xx means it is
up (and the delivery's own problem), a 429 that it wants less (Retry-After handles that).
"""

from __future__ import annotations


def is_outage(status: int | None) -> bool:
    return status is None or status >= 500


class Circuit:
    def __init__(self, failures: int, cooldown: float) -> None:
        self._threshold = failures
        self._cooldown = cooldown
        self.state = "closed"
        self._streak = 0
        self._opened_at = 0.0
        self._probing = False
        self.failing_since: float | None = None  # first failure of the current streak

    def allowance(self, now: float) -> int | None:
        """How many attempts may start now: None for no limit."""
        if self.state == "closed":
            return None
        if self.state == "open" and now >= self._opened_at + self._cooldown:
            self.state = "half-open"
        if self.state == "half-open":
            return 0 if self._probing else 1
        return 0

    def started(self, count: int) -> None:
        if self.state == "half-open" and count:
            self._probing = True

    def wait(self, now: float) -> float:
        """Seconds until the next probe may go (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - now)

    def record(self, status: int | None, now: float) -> None:
        if not is_outage(status):
            self.state, self._streak, self._probing, self.failing_since = "closed", 0, False, None
            return
        self._streak += 1
        if self.failing_since is None:
            self.failing_since = now
        if self.state == "half-open" or (
            self.state == "closed" and self._streak >= self._threshold
        ):
            self.state, self._opened_at, self._probing = "open", now, False

    @property
    def opened_at(self) -> float | None:
        return self._opened_at if self.state != "closed" else None

    def trip(self, opened_at: float, failing_since: float | None) -> None:
        """Open it as another relay did at ``opened_at`` (a shared database): the cooldown
        runs from then, and the outage is as old as that relay saw it."""
        self.state, self._opened_at, self._probing = "open", opened_at, False
        self._streak = max(self._streak, self._threshold)
        if failing_since is not None and (
            self.failing_since is None or failing_since < self.failing_since
        ):
            self.failing_since = failing_since

    def reset(self) -> None:
        """Close it (an operator resumed the destination)."""
        self.state, self._streak, self._probing, self.failing_since = "closed", 0, False, None
