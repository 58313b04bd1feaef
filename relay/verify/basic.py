"""``verify = "basic"``: HTTP Basic authentication (``Authorization: Basic b64(user:pass)``).

For senders that sign nothing but can put credentials in the URL they call
(``https://user:pass@hooks.example.com/in/name``). Several passwords may be valid at once,
for a rotation. The comparison covers user and password together, in constant time.
"""

from __future__ import annotations

import base64
from typing import Literal

from relay.configtypes import SecretRef, SourceBase
from relay.verify.base import Inbound, Rejected, any_equal, header_bytes, secrets_of


class BasicSource(SourceBase):
    verify: Literal["basic"]
    username: str
    password: SecretRef | None = None
    passwords: tuple[SecretRef, ...] = ()

    def secret_headers(self) -> frozenset[str]:
        return frozenset({"authorization"})

    def build_verifier(self) -> BasicVerifier:
        passwords = secrets_of(self.password, self.passwords)
        if not passwords:
            raise ValueError(f'{self.verify} needs a password: password = "env:NAME"')
        user = self.username.encode()
        return BasicVerifier(tuple(user + b":" + p for p in passwords))


class BasicVerifier:
    def __init__(self, credentials: tuple[bytes, ...]) -> None:
        self._expected = tuple(b"Basic " + base64.b64encode(c) for c in credentials)

    def verify(self, request: Inbound, now: float) -> None:
        provided = request.headers.get("Authorization")
        if provided is None:
            raise Rejected("missing Authorization header (Basic credentials)")
        # Compare the header as sent against the encoded credentials: no decoding of
        # attacker-chosen base64 is needed, and "basic" in any case is accepted.
        scheme, _, value = provided.strip().partition(" ")
        given = b"Basic " + header_bytes(value.strip())
        if scheme.lower() != "basic" or not any_equal(self._expected, [given]):
            raise Rejected("Basic credentials do not match")
