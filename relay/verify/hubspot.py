"""``verify = "hubspot"``: HubSpot's v3 request signature.

``X-HubSpot-Signature-v3`` is base64 HMAC-SHA256, keyed with the app's client secret, over
``method + uri + body + timestamp``, where ``timestamp`` is ``X-HubSpot-Request-Timestamp``
(milliseconds; rejected beyond ``tolerance``, 300 s as HubSpot says) and ``uri`` is the full
URL HubSpot called, with a few percent-escapes decoded (HubSpot's docs list them). Set
``public_url`` to the URL configured in HubSpot when relay sits behind a proxy. The body is
an array of events: the first one's ``eventId`` is the idempotency key and its
``subscriptionType`` the type.
"""

from __future__ import annotations

import base64
from typing import Literal

from relay.configtypes import Duration, Rule, SharedSecretSource
from relay.verify.base import Inbound, Rejected, any_equal, header_bytes, mac
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_window

# The escapes HubSpot decodes before signing (developers.hubspot.com, "Validate requests").
DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


class HubspotSource(SharedSecretSource):
    verify: Literal["hubspot"]
    public_url: str | None = None  # the target URL set in HubSpot, without a query string
    tolerance: Duration = DEFAULT_TOLERANCE
    idempotency_key: Rule = "json:/0/eventId"
    event_type: Rule = "json:/0/subscriptionType"
    occurred_at: Rule = "json:/0/occurredAt"

    def build_verifier(self) -> HubspotVerifier:
        keys = self.keys('hubspot needs the client secret: secret = "env:HUBSPOT_SECRET"')
        return HubspotVerifier(keys, self.public_url, self.tolerance)


def decode_uri(uri: str) -> str:
    for escape, char in DECODED.items():
        uri = uri.replace(escape, char).replace(escape.lower(), char)
    return uri


class HubspotVerifier:
    def __init__(self, keys: tuple[bytes, ...], public_url: str | None, tolerance: float):
        self._keys = keys
        self._public_url = public_url
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        signature = request.headers.get("X-HubSpot-Signature-v3")
        stamp = request.headers.get("X-HubSpot-Request-Timestamp")
        if signature is None or stamp is None:
            raise Rejected("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
        stamp = stamp.strip()
        if not stamp.isdigit() or len(stamp) > 15:
            raise Rejected("malformed timestamp")
        check_window(int(stamp) / 1000.0, now, self._tolerance)
        uri = decode_uri(request.public_url(self._public_url))
        signed = header_bytes(request.method) + header_bytes(uri) + request.body + stamp.encode()
        expected = [base64.b64encode(mac(k, signed)) for k in self._keys]
        if not any_equal(expected, [header_bytes(signature.strip())]):
            raise Rejected("signature does not match (is public_url the URL HubSpot calls?)")
