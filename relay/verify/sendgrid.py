"""``verify = "sendgrid"``: SendGrid's signed Event Webhook (ECDSA P-256).

``X-Twilio-Email-Event-Webhook-Signature`` is a base64 DER ECDSA-SHA256 signature of
``X-Twilio-Email-Event-Webhook-Timestamp`` + the body (byte-exact, with the ``\\r\\n``
SendGrid appends), checked with the verification key from Mail Settings (base64). The
body is an array of events; the first one's ``sg_event_id`` is the batch's idempotency key
(SendGrid retries a batch as it was) and its ``event`` the type.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from relay.configtypes import Duration, Rule, SourceBase
from relay.verify.asymmetric import Check, ecdsa_p256
from relay.verify.base import Inbound, Rejected, header_bytes
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_timestamp

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


class SendgridSource(SourceBase):
    verify: Literal["sendgrid"]
    public_key: str  # the verification key (base64), from Mail Settings → Event Webhook
    tolerance: Duration = DEFAULT_TOLERANCE
    idempotency_key: Rule = "json:/0/sg_event_id"
    event_type: Rule = "json:/0/event"
    occurred_at: Rule = "json:/0/timestamp"

    def build_verifier(self) -> SendgridVerifier:
        try:
            check = ecdsa_p256(self.public_key)
        except ValueError as exc:
            raise ValueError(f"public_key: {exc}") from None
        return SendgridVerifier(check, self.tolerance)


class SendgridVerifier:
    def __init__(self, check: Check, tolerance: float) -> None:
        self._check = check
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        signature = request.headers.get(SIGNATURE)
        stamp = request.headers.get(TIMESTAMP)
        if signature is None or stamp is None:
            raise Rejected(f"missing {SIGNATURE} or {TIMESTAMP} header")
        check_timestamp(stamp, now, self._tolerance)
        try:
            given = base64.b64decode(header_bytes(signature.strip()), validate=True)
        except (binascii.Error, ValueError):
            raise Rejected("signature is not valid base64") from None
        if not self._check(given, header_bytes(stamp) + request.body):
            raise Rejected("signature does not match")
