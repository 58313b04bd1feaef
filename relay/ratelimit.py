"""Token buckets: how much may pass now, and how long to wait otherwise. Pure, no I/O.

A bucket holds up to ``burst`` tokens and gains ``rate`` per second; each request takes
one. ``Buckets`` keeps one bucket per key (a client address) and forgets the least
recently seen keys beyond a bound, so a scan from many addresses cannot grow memory.
"""

from __future__ import annotations

from collections import OrderedDict


class TokenBucket:
    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if granted, else the seconds until one is available."""
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate

    def take_up_to(self, wanted: int, now: float) -> tuple[int, float]:
        """Take as many whole tokens as are there, up to ``wanted``: (taken, seconds until
        the next token when none was)."""
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._stamp = now
        taken = min(wanted, int(self._tokens))
        self._tokens -= taken
        wait = 0.0 if taken else (1.0 - self._tokens) / self._rate
        return taken, wait

    def next_token_in(self, now: float) -> float:
        elapsed = max(0.0, now - self._stamp)
        tokens = min(self._burst, self._tokens + elapsed * self._rate)
        return max(0.0, (1.0 - tokens) / self._rate)

    def give_back(self, count: int) -> None:
        """Return tokens taken for work that did not happen (fewer deliveries were due)."""
        self._tokens = min(self._burst, self._tokens + count)


class Buckets:
    """One bucket per key, at most ``max_keys`` of them (least recently used go first)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst, now)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)
