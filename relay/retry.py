"""When to try a delivery again. Pure functions: values in, values out, no I/O.

- 2xx: delivered.
- Retryable: no response (connection error, timeout), 408, 425, 429 and 5xx.
- Anything else (other 4xx, 1xx, 3xx: relay never follows redirects): dead at once.
- Backoff: exponential with full jitter, ``uniform(0, min(cap, base * factor**(n-1)))``,
  so many deliveries failing together do not retry together; or an explicit ``schedule``
  (the wait after attempt n is its n-th entry, the last one repeating), 10% jittered.
  ``jitter`` sets the random share of each wait (1: full, 0: none).
- ``Retry-After`` (seconds or an HTTP date) replaces the backoff, up to ``retry_after_max``.
- Dead when ``max_attempts`` is spent or the next try would be past ``max_age``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from relay.sections import RetryPolicy

RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Decision:
    state: str  # 'delivered', 'pending' (try again at next_attempt_at) or 'dead'
    next_attempt_at: float
    reason: str | None = None


def is_success(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def is_retryable(status: int | None) -> bool:
    """True for a failure worth another try; None means no response at all."""
    return status is None or status in RETRYABLE_4XX or 500 <= status < 600


def backoff(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the given (1-based) failed attempt, jittered."""
    if policy.schedule:
        wait = policy.schedule[min(attempt, len(policy.schedule)) - 1]
        jitter = 0.1 if policy.jitter is None else policy.jitter
    else:
        exponent = min(attempt - 1, 64)  # beyond this the cap applies anyway
        wait = min(policy.cap, policy.base * policy.factor**exponent)
        jitter = 1.0 if policy.jitter is None else policy.jitter
    return wait - (rng or random).uniform(0.0, wait * jitter)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if unusable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def decide(
    policy: RetryPolicy,
    *,
    attempt: int,
    status: int | None,
    created_at: float,
    now: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """What happens to a delivery after its ``attempt``-th try got ``status``."""
    if is_success(status):
        return Decision("delivered", now)
    if not is_retryable(status):
        return Decision("dead", now, "permanent")  # the attempt's error names the status
    if attempt >= policy.max_attempts:
        return Decision("dead", now, f"gave up after {attempt} attempts")
    if retry_after is not None:
        delay = min(retry_after, policy.retry_after_max)
    else:
        delay = backoff(policy, attempt, rng)
    if now + delay - created_at > policy.max_age:
        return Decision("dead", now, f"older than max_age ({policy.max_age:g}s)")
    return Decision("pending", now + delay)
