"""``verify = "shopify"``: ``X-Shopify-Hmac-Sha256``, the base64 HMAC-SHA256 of the body.

Keyed with the app's client secret. Newer "events" deliveries send the same value as
``shopify-hmac-sha256``. Shopify may take up to an hour to start signing with a new secret,
so keep the old one in ``secrets`` meanwhile. No timestamp is signed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Literal

from relay.configtypes import Rule, SharedSecretSource
from relay.verify.base import Inbound, Rejected, equal, header_bytes


class ShopifySource(SharedSecretSource):
    verify: Literal["shopify"]
    idempotency_key: Rule = "header:X-Shopify-Webhook-Id"
    event_type: Rule = "header:X-Shopify-Topic"
    occurred_at: Rule = "header:X-Shopify-Triggered-At"

    def build_verifier(self) -> ShopifyVerifier:
        keys = self.keys('shopify needs the client secret: secret = "env:SHOPIFY_SECRET"')
        return ShopifyVerifier(keys)


class ShopifyVerifier:
    def __init__(self, keys: tuple[bytes, ...]) -> None:
        self._keys = keys

    def verify(self, request: Inbound, now: float) -> None:
        headers = request.headers
        provided = headers.get("X-Shopify-Hmac-Sha256") or headers.get("shopify-hmac-sha256")
        if provided is None:
            raise Rejected("missing X-Shopify-Hmac-Sha256 header")
        try:
            given = base64.b64decode(header_bytes(provided.strip()), validate=True)
        except (binascii.Error, ValueError):
            raise Rejected("signature is not valid base64") from None
        expected = [hmac.digest(k, request.body, "sha256") for k in self._keys]
        if not any([equal(e, given) for e in expected]):
            raise Rejected("signature does not match")
