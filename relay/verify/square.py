"""``verify = "square"``: ``x-square-hmacsha256-signature``.

Base64 HMAC-SHA256, keyed with the subscription's signature key, over the notification URL
followed by the body. The URL must be exactly the one registered with Square, so set
``public_url`` to it when relay sits behind a proxy. No timestamp is signed; ``event_id``
is the idempotency key.
"""

from __future__ import annotations

import base64
from typing import Literal

from relay.configtypes import Rule, SharedSecretSource
from relay.verify.base import Inbound, Rejected, any_equal, header_bytes, mac


class SquareSource(SharedSecretSource):
    verify: Literal["square"]
    public_url: str | None = None  # the notification URL registered with Square
    idempotency_key: Rule = "json:/event_id"
    event_type: Rule = "json:/type"
    occurred_at: Rule = "json:/created_at"

    def build_verifier(self) -> SquareVerifier:
        keys = self.keys('square needs the signature key: secret = "env:SQUARE_KEY"')
        return SquareVerifier(keys, self.public_url)


class SquareVerifier:
    def __init__(self, keys: tuple[bytes, ...], public_url: str | None) -> None:
        self._keys = keys
        self._public_url = public_url

    def verify(self, request: Inbound, now: float) -> None:
        signature = request.headers.get("x-square-hmacsha256-signature")
        if signature is None:
            raise Rejected("missing x-square-hmacsha256-signature header")
        signed = header_bytes(request.public_url(self._public_url)) + request.body
        expected = [base64.b64encode(mac(k, signed)) for k in self._keys]
        if not any_equal(expected, [header_bytes(signature.strip())]):
            raise Rejected("signature does not match (is public_url the URL Square calls?)")
