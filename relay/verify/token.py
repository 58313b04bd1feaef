"""``verify = "token"``: a static shared token in a header, compared in constant time."""

from __future__ import annotations

from typing import Literal

from relay.configtypes import SecretRef, SourceBase
from relay.verify.base import Inbound, Rejected, equal, header_bytes, secrets_of


class TokenSource(SourceBase):
    verify: Literal["token"]
    secret: SecretRef | None = None
    secrets: tuple[SecretRef, ...] = ()
    header: str = "Authorization"
    prefix: str = "Bearer "  # what precedes the token in the header value

    def build_verifier(self) -> TokenVerifier:
        tokens = secrets_of(self.secret, self.secrets)
        if not tokens:
            raise ValueError('token needs a secret: set secret = "env:NAME" or similar')
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
