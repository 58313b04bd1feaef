"""``verify = "stripe"``: the ``Stripe-Signature`` header.

``t=<unix>,v1=<hex>[,v1=<hex>…]``; each ``v1`` is HMAC-SHA256 over ``"{t}.{body}"`` keyed
with the whole ``whsec_…`` string (not base64-decoded). During a secret roll Stripe sends
one ``v1`` per active secret, and any match passes. ``v0`` (legacy test mode) is ignored.
Unlike Stripe's SDK, which only rejects old timestamps, relay rejects both directions.
"""

from __future__ import annotations

import hmac
from typing import Literal

from relay.configtypes import Duration, Rule, SharedSecretSource
from relay.verify.base import Inbound, Rejected, equal
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_timestamp

HEADER = "Stripe-Signature"


class StripeSource(SharedSecretSource):
    verify: Literal["stripe"]
    tolerance: Duration = DEFAULT_TOLERANCE
    idempotency_key: Rule = "json:/id"
    catch_up_api = "stripe"
    event_type: Rule = "json:/type"
    occurred_at: Rule = "json:/created"

    def build_verifier(self) -> StripeVerifier:
        keys = self.keys('stripe needs the endpoint secret: secret = "env:STRIPE_WHSEC"')
        return StripeVerifier(keys, self.tolerance)


class StripeVerifier:
    def __init__(self, keys: tuple[bytes, ...], tolerance: float) -> None:
        self._keys = keys
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        header = request.headers.get(HEADER)
        if header is None:
            raise Rejected(f"missing {HEADER} header")
        stamp, signatures = _parse(header)
        check_timestamp(stamp, now, self._tolerance)
        assert stamp is not None  # check_timestamp rejected a missing one
        signed = stamp.encode() + b"." + request.body  # the t value exactly as sent
        expected = [hmac.digest(key, signed, "sha256").hex().encode() for key in self._keys]
        matched = [equal(e, s) for e in expected for s in signatures]
        if not any(matched):
            raise Rejected("no v1 signature matches")


def _parse(header: str) -> tuple[str | None, list[bytes]]:
    stamp: str | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            stamp = value
        elif key == "v1":
            signatures.append(value.strip().encode("utf-8", "replace"))
    if not signatures:
        raise Rejected(f"{HEADER} has no v1 signature")
    return stamp, signatures
