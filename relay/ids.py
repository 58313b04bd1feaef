"""Event ids: 'evt_' + a ULID (48-bit milliseconds, 80 random bits, Crockford base32).

Sortable by time, so the events index grows at its end, and unique without coordination,
so a request gets its id before the writer sees it. The randomness only has to avoid
collisions, not resist guessing (ids are not secrets), so ``random`` serves and costs no
system call; the time part is encoded once per millisecond.
"""

from __future__ import annotations

import base64
import random
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# RFC 4648 base32 letters -> Crockford's, so the C encoder does the random part.
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD.encode())
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


def new_event_id(now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    noise = base64.b32encode(random.getrandbits(80).to_bytes(10, "big"))
    return "evt_" + _time_part(millis) + noise.translate(_FROM_RFC4648).decode()
