"""Event ids: 'evt_' + a ULID (48-bit milliseconds, 80 random bits, Crockford base32).

Sortable by time, so the events index grows at its end, and unique without coordination,
so a request gets its id before the writer sees it. The randomness only has to avoid
collisions, not resist guessing (ids are not secrets), so ``random`` serves and costs no
system call; the time part is encoded once per millisecond.
"""

from __future__ import annotations

import random
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
_last_millis = -1
_last_prefix = ""


def _time_part(millis: int) -> str:
    global _last_millis, _last_prefix  # a one-entry cache
    if millis != _last_millis:
        chars = []
        value = millis
        for _ in range(10):
            chars.append(_CROCKFORD[value & 31])
            value >>= 5
        _last_millis, _last_prefix = millis, "".join(reversed(chars))
    return _last_prefix


def id_floor(stamp: float) -> str:
    """The smallest id an event received at ``stamp`` can have: a time filter adds ``id >=
    id_floor(since)`` and ``id < id_floor(until)`` (with some slack) beside its bounds on
    received_at, so a list walks the primary key from there instead of sorting the range."""
    millis = max(0, int(stamp * 1000)) & ((1 << 48) - 1)
    value, chars = millis, []
    for _ in range(10):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "evt_" + "".join(reversed(chars))


def new_event_id(now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    noise = random.getrandbits(80)
    p = _PAIRS
    return (
        f"evt_{_time_part(millis)}{p[noise >> 70]}{p[(noise >> 60) & 1023]}"
        f"{p[(noise >> 50) & 1023]}{p[(noise >> 40) & 1023]}{p[(noise >> 30) & 1023]}"
        f"{p[(noise >> 20) & 1023]}{p[(noise >> 10) & 1023]}{p[noise & 1023]}"
    )
