"""Console sign-in: sessions that sign-out really ends, and wrong tokens slowed, not locked.

A session is a random id the server remembers (in memory: a restart signs everyone out), so
signing out, or the 12 hours running out, ends it for every copy of the cookie. Wrong
tokens are slowed down per client address, more with each one; a right token is never
refused, so nobody who shares an address with a guesser (an office, a proxy) is locked out.
Clocks are passed in: both classes are plain values-in, values-out logic.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict

SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000  # the oldest are forgotten first
FREE_TRIES = 3  # wrong tokens per address answered at once; later ones wait
MAX_DELAY = 10.0  # seconds, the longest a wrong token waits for its answer
FORGET_AFTER = 900.0  # seconds without a wrong token before an address starts afresh


class Sessions:
    """Open sessions, each of one person (by name: relay.people says, per request, whether
    that person still exists and what they may do)."""

    def __init__(self, key: bytes, lifetime: float = SESSION_SECONDS) -> None:
        self._key = key
        self._lifetime = lifetime
        self._open: OrderedDict[str, tuple[float, str]] = OrderedDict()  # expiry, person

    def open(self, now: float, person: str = "") -> str:
        session = secrets.token_urlsafe(32)
        self._open[session] = (now + self._lifetime, person)
        while len(self._open) > MAX_SESSIONS:
            self._open.popitem(last=False)
        return session

    def person(self, session: str | None, now: float) -> str | None:
        """Whose session this is, while it lasts; None for none (or one that ran out)."""
        found = self._open.get(session or "")
        if found is None:
            return None
        if found[0] <= now:
            del self._open[session or ""]
            return None
        return found[1]

    def valid(self, session: str | None, now: float) -> bool:
        return self.person(session, now) is not None

    def close(self, session: str | None) -> None:
        self._open.pop(session or "", None)

    def csrf(self, session: str) -> str:
        """The form token of a session: a MAC of it, so it cannot be made without the key."""
        return hmac.new(self._key, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()[:32]


class Throttle:
    """How long to hold back the answer to a wrong token, per client address."""

    def __init__(self, max_addresses: int = 10_000) -> None:
        self._wrong: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._max = max_addresses

    def wrong(self, address: str, now: float) -> float:
        """A wrong token from ``address``: seconds to wait before answering it."""
        count, last = self._wrong.pop(address, (0, now))
        count = 1 if now - last > FORGET_AFTER else count + 1
        self._wrong[address] = (count, now)
        while len(self._wrong) > self._max:
            self._wrong.popitem(last=False)
        if count <= FREE_TRIES:
            return 0.0
        return float(min(MAX_DELAY, 0.5 * 2 ** (count - FREE_TRIES - 1)))
