"""``verify = "linear"``: ``Linear-Signature``, hex HMAC-SHA256 of the body (no prefix).

Linear's replay defence is inside the signed body: ``webhookTimestamp`` (milliseconds)
must be within ``tolerance`` (60 s, as Linear's SDK checks). The ``Linear-Timestamp``
header is not signed, so relay ignores it, as the SDK does.
"""

from __future__ import annotations

from typing import Literal

from relay.configtypes import Duration, Rule, SharedSecretSource
from relay.verify.base import (
    Inbound,
    Rejected,
    any_equal,
    header_bytes,
    json_object,
    mac,
)
from relay.verify.timestamps import check_window


class LinearSource(SharedSecretSource):
    verify: Literal["linear"]
    tolerance: Duration = 60.0
    idempotency_key: Rule = "header:Linear-Delivery"
    event_type: Rule = "header:Linear-Event"
    occurred_at: Rule = "json:/createdAt"

    def build_verifier(self) -> LinearVerifier:
        keys = self.keys('linear needs the signing secret: secret = "env:LINEAR_SECRET"')
        return LinearVerifier(keys, self.tolerance)


class LinearVerifier:
    def __init__(self, keys: tuple[bytes, ...], tolerance: float) -> None:
        self._keys = keys
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        signature = request.headers.get("Linear-Signature")
        if signature is None:
            raise Rejected("missing Linear-Signature header")
        expected = [mac(k, request.body).hex().encode() for k in self._keys]
        if not any_equal(expected, [header_bytes(signature.strip().lower())]):
            raise Rejected("signature does not match")
        # Only after the MAC: the timestamp is trusted because it is signed.
        payload = json_object(request.body)
        stamp = payload.get("webhookTimestamp") if payload is not None else None
        if not isinstance(stamp, int) or isinstance(stamp, bool) or not 0 < stamp < 10**15:
            raise Rejected("webhookTimestamp missing from the body")
        check_window(stamp / 1000.0, now, self._tolerance)
