"""``verify = "standard-webhooks"``: the Standard Webhooks scheme (also Svix's ``svix-*``).

``webhook-signature`` is a space-separated list of ``v1,<base64>`` entries, each
HMAC-SHA256 over ``"{webhook-id}.{webhook-timestamp}.{body}"`` keyed with the base64 bytes of
the ``whsec_…`` secret; any match passes. The timestamp must be within ``tolerance`` either
way. Svix sends the same values as ``svix-id``, ``svix-timestamp``, ``svix-signature``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Literal

from relay.configtypes import Duration, Rule, SecretRef, SourceBase
from relay.verify.base import Inbound, Rejected, equal, header_bytes
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_timestamp


class StandardWebhooksSource(SourceBase):
    verify: Literal["standard-webhooks"]
    secret: SecretRef | None = None  # whsec_<base64>
    secrets: tuple[SecretRef, ...] = ()
    tolerance: Duration = DEFAULT_TOLERANCE
    idempotency_key: Rule = "header:webhook-id"  # for Svix: header:svix-id
    event_type: Rule = "json:/type"

    def build_verifier(self) -> StandardWebhooksVerifier:
        values = [s.value for s in (self.secret, *self.secrets) if s is not None]
        if not values:
            raise ValueError('standard-webhooks needs a secret: secret = "env:WHSEC"')
        return StandardWebhooksVerifier(tuple(_key(v) for v in values), self.tolerance)


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not whsec_ followed by base64") from None


class StandardWebhooksVerifier:
    def __init__(self, keys: tuple[bytes, ...], tolerance: float) -> None:
        self._keys = keys
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        headers = request.headers
        prefix = "webhook-" if "webhook-signature" in headers else "svix-"
        msg_id = headers.get(prefix + "id")
        signature = headers.get(prefix + "signature")
        if msg_id is None or signature is None:
            raise Rejected("missing webhook-id or webhook-signature header")
        stamp = check_timestamp(headers.get(prefix + "timestamp"), now, self._tolerance)
        signed = f"{msg_id}.{stamp}.".encode("utf-8", "replace") + request.body
        given = [
            header_bytes(entry[3:]) for entry in signature.split(" ") if entry.startswith("v1,")
        ]
        if not given:
            raise Rejected("no v1 signature in webhook-signature")
        expected = [base64.b64encode(hmac.digest(k, signed, "sha256")) for k in self._keys]
        if not any([equal(e, g) for e in expected for g in given]):
            raise Rejected("no v1 signature matches")
