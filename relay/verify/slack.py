"""``verify = "slack"``: Slack's signing secret (v0).

``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{ts}:{body}">`` with ``ts`` from
``X-Slack-Request-Timestamp``, which must be within ``tolerance`` (Slack's SDK: 5 minutes).
Slack's ``url_verification`` request (sent, signed, when an Events API URL is saved) is
answered by relay with its ``challenge`` and neither stored nor forwarded.
"""

from __future__ import annotations

import hmac
import json
from typing import Literal

from relay.configtypes import Duration, Rule, SharedSecretSource
from relay.verify.base import Handshake, Inbound, Rejected, equal, header_bytes
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_timestamp


class SlackSource(SharedSecretSource):
    verify: Literal["slack"]
    tolerance: Duration = DEFAULT_TOLERANCE
    idempotency_key: Rule = "json:/event_id"
    event_type: Rule = "json:/event/type"
    occurred_at: Rule = "json:/event_time"

    def build_verifier(self) -> SlackVerifier:
        keys = self.keys('slack needs the signing secret: secret = "env:SLACK_SIGNING_SECRET"')
        return SlackVerifier(keys, self.tolerance)


class SlackVerifier:
    def __init__(self, keys: tuple[bytes, ...], tolerance: float) -> None:
        self._keys = keys
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        signature = request.headers.get("X-Slack-Signature")
        if signature is None:
            raise Rejected("missing X-Slack-Signature header")
        stamp = check_timestamp(
            request.headers.get("X-Slack-Request-Timestamp"), now, self._tolerance
        )
        signed = f"v0:{stamp}:".encode() + request.body
        given = header_bytes(signature)
        expected = [b"v0=" + hmac.digest(k, signed, "sha256").hex().encode() for k in self._keys]
        if not any([equal(e, given) for e in expected]):
            raise Rejected("signature does not match")

    def handshake(self, request: Inbound) -> Handshake | None:
        if b"url_verification" not in request.body:  # cheap test before parsing
            return None
        try:
            payload = json.loads(request.body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(payload, dict) or payload.get("type") != "url_verification":
            return None
        challenge = payload.get("challenge")
        if not isinstance(challenge, str):
            return None
        return Handshake(200, challenge.encode(), "text/plain")
