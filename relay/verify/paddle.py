"""``verify = "paddle"``: Paddle Billing's ``Paddle-Signature: ts=…;h1=…[;h1=…]``.

Each ``h1`` is hex HMAC-SHA256 over ``"{ts}:{body}"`` keyed with the endpoint's secret key
(``pdl_ntfset_…``, used as is); any ``h1`` and any configured secret may match. Paddle's
Python SDK allows 5 s of clock difference; relay defaults to the common 300 s so a Pi with
a drifting clock does not drop events (duplicates are caught by ``event_id``); set
``tolerance = "5s"`` to match the SDK.
"""

from __future__ import annotations

from typing import Literal

from relay.configtypes import Duration, Rule, SharedSecretSource
from relay.verify.base import Inbound, Rejected, any_equal, header_bytes, mac
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_timestamp


class PaddleSource(SharedSecretSource):
    verify: Literal["paddle"]
    tolerance: Duration = DEFAULT_TOLERANCE
    idempotency_key: Rule = "json:/event_id"
    catch_up_api = "paddle"
    event_type: Rule = "json:/event_type"
    occurred_at: Rule = "json:/occurred_at"

    def build_verifier(self) -> PaddleVerifier:
        keys = self.keys('paddle needs the secret key: secret = "env:PADDLE_WEBHOOK_SECRET"')
        return PaddleVerifier(keys, self.tolerance)


class PaddleVerifier:
    def __init__(self, keys: tuple[bytes, ...], tolerance: float) -> None:
        self._keys = keys
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        header = request.headers.get("Paddle-Signature")
        if header is None:
            raise Rejected("missing Paddle-Signature header")
        stamp: str | None = None
        given: list[bytes] = []
        for item in header.split(";"):
            key, _, value = item.strip().partition("=")
            if key == "ts":
                stamp = value.strip()
            elif key == "h1":
                given.append(header_bytes(value.strip()))
        if not given:
            raise Rejected("Paddle-Signature has no h1 signature")
        check_timestamp(stamp, now, self._tolerance)
        signed = f"{stamp}:".encode() + request.body
        expected = [mac(k, signed).hex().encode() for k in self._keys]
        if not any_equal(expected, given):
            raise Rejected("no h1 signature matches")
