"""``verify = "zoom"``: ``x-zm-signature: v0=<hex HMAC-SHA256>`` of
``"v0:{x-zm-request-timestamp}:{body}"``, keyed with the app's Secret Token.

Handshake: Zoom's ``endpoint.url_validation`` request (on saving the URL, then every 72 h)
is answered, after its signature is checked, with ``{"plainToken": …, "encryptedToken":
hex HMAC-SHA256(secret, plainToken)}`` and neither stored nor forwarded. Zoom events carry
no id, so there is no idempotency key by default.
"""

from __future__ import annotations

import json
from typing import Literal

from relay.configtypes import Duration, Rule, SharedSecretSource
from relay.verify.base import (
    Handshake,
    Inbound,
    Rejected,
    any_equal,
    header_bytes,
    json_object,
    mac,
)
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_timestamp


class ZoomSource(SharedSecretSource):
    verify: Literal["zoom"]
    tolerance: Duration = DEFAULT_TOLERANCE
    event_type: Rule = "json:/event"
    occurred_at: Rule = "json:/event_ts"

    def build_verifier(self) -> ZoomVerifier:
        keys = self.keys('zoom needs the Secret Token: secret = "env:ZOOM_SECRET_TOKEN"')
        return ZoomVerifier(keys, self.tolerance)


class ZoomVerifier:
    def __init__(self, keys: tuple[bytes, ...], tolerance: float) -> None:
        self._keys = keys
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        signature = request.headers.get("x-zm-signature")
        if signature is None:
            raise Rejected("missing x-zm-signature header")
        stamp = check_timestamp(request.headers.get("x-zm-request-timestamp"), now, self._tolerance)
        signed = f"v0:{stamp}:".encode() + request.body
        expected = [b"v0=" + mac(k, signed).hex().encode() for k in self._keys]
        if not any_equal(expected, [header_bytes(signature.strip())]):
            raise Rejected("signature does not match")

    def handshake(self, request: Inbound) -> Handshake | None:
        if b"endpoint.url_validation" not in request.body:
            return None
        payload = json_object(request.body)
        if payload is None or payload.get("event") != "endpoint.url_validation":
            return None
        inner = payload.get("payload")
        plain = inner.get("plainToken") if isinstance(inner, dict) else None
        if not isinstance(plain, str):
            return Handshake(400, b"endpoint.url_validation without a plainToken")
        # The first (current) secret: Zoom checks the answer against the token it holds.
        encrypted = mac(self._keys[0], plain.encode()).hex()
        answer = json.dumps({"plainToken": plain, "encryptedToken": encrypted}).encode()
        return Handshake(200, answer, "application/json")
