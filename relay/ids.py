"""Event ids: 'evt_' + a ULID (48-bit milliseconds, 80 random bits, Crockford base32).

Sortable by time, so the events index grows at its end, and unique without coordination,
so a request gets its id before the writer sees it.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_event_id(now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "evt_" + "".join(reversed(chars))
