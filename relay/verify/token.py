"""``verify = "token"``: a static shared token in a header, compared in constant time."""

from __future__ import annotations

from typing import Literal

from relay.configtypes import SharedSecretSource
from relay.verify.base import Inbound, Rejected, equal, header_bytes


class TokenSource(SharedSecretSource):
    verify: Literal["token"]
    header: str = "Authorization"
    prefix: str = "Bearer "  # what precedes the token in the header value

    def secret_headers(self) -> frozenset[str]:
        return frozenset({self.header.lower()})

    def build_verifier(self) -> TokenVerifier:
        tokens = self.keys('token needs a secret: set secret = "env:NAME" or similar')
        return TokenVerifier(self.header, self.prefix.encode(), tokens)


class TokenVerifier:
    def __init__(self, header: str, prefix: bytes, tokens: tuple[bytes, ...]) -> None:
        self._header = header
        self._expected = tuple(prefix + token for token in tokens)

    def verify(self, request: Inbound, now: float) -> None:
        provided = request.headers.get(self._header)
        if provided is None:
            raise Rejected(f"missing {self._header} header")
        given = header_bytes(provided)
        # Compare against every token (no early exit) so timing does not tell which matched.
        matched = [equal(expected, given) for expected in self._expected]
        if not any(matched):
            raise Rejected(f"{self._header} does not match")
