"""``verify = "twitch"``: Twitch EventSub webhooks.

``Twitch-Eventsub-Message-Signature: sha256=<hex HMAC-SHA256>`` over the message id, the
timestamp and the body concatenated with no separator, keyed with the subscription's
secret. The timestamp (RFC 3339, nanoseconds) must be within ``tolerance``: Twitch's docs
say to reject messages older than 10 minutes.

Handshake: a ``webhook_callback_verification`` message is answered with its ``challenge``
(200, text/plain) after the signature is checked, and neither stored nor forwarded.
``revocation`` messages are stored like notifications: an operator wants to see them.
"""

from __future__ import annotations

from typing import Literal

from relay.configtypes import Duration, Rule, SharedSecretSource
from relay.instants import parse_instant
from relay.verify.base import (
    Handshake,
    Inbound,
    Rejected,
    any_equal,
    header_bytes,
    json_object,
    mac,
)
from relay.verify.timestamps import check_window

PREFIX = "Twitch-Eventsub-Message-"


class TwitchSource(SharedSecretSource):
    verify: Literal["twitch"]
    tolerance: Duration = 600.0
    idempotency_key: Rule = "header:Twitch-Eventsub-Message-Id"
    event_type: Rule = "header:Twitch-Eventsub-Subscription-Type"
    occurred_at: Rule = "header:Twitch-Eventsub-Message-Timestamp"

    def build_verifier(self) -> TwitchVerifier:
        keys = self.keys('twitch needs the subscription secret: secret = "env:TWITCH_SECRET"')
        return TwitchVerifier(keys, self.tolerance)


class TwitchVerifier:
    def __init__(self, keys: tuple[bytes, ...], tolerance: float) -> None:
        self._keys = keys
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        headers = request.headers
        msg_id = headers.get(PREFIX + "Id")
        stamp = headers.get(PREFIX + "Timestamp")
        signature = headers.get(PREFIX + "Signature")
        if msg_id is None or stamp is None or signature is None:
            raise Rejected(f"missing {PREFIX}Id, Timestamp or Signature header")
        when = parse_instant(stamp) if "T" in stamp.upper() else None
        if when is None:
            raise Rejected("malformed timestamp")
        check_window(when, now, self._tolerance)
        signed = header_bytes(msg_id) + header_bytes(stamp) + request.body
        expected = [b"sha256=" + mac(k, signed).hex().encode() for k in self._keys]
        if not any_equal(expected, [header_bytes(signature.strip())]):
            raise Rejected("signature does not match")

    def handshake(self, request: Inbound) -> Handshake | None:
        if request.headers.get(PREFIX + "Type") != "webhook_callback_verification":
            return None
        payload = json_object(request.body)
        challenge = payload.get("challenge") if payload is not None else None
        if not isinstance(challenge, str):
            return Handshake(400, b"webhook_callback_verification without a challenge")
        return Handshake(200, challenge.encode())
