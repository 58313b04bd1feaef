"""``verify = "discord"``: Discord interactions and webhook events (Ed25519).

``X-Signature-Ed25519`` (hex, 64 bytes) signs ``X-Signature-Timestamp`` + the body, with the
application's public key (hex, from the Developer Portal). Discord probes the endpoint with
bad signatures and expects 401, which relay gives. The timestamp is checked against
``tolerance`` as a replay defence (Discord documents no window; 300 s by default).

Handshakes: an interaction PING (``"type": 1``) is answered ``{"type": 1}`` (PONG); a webhook
event PING (``"type": 0``) is answered 204. Neither is stored.

Interactions need an answer in 3 s, and relay does not wait for the internal service: it
stores the interaction and answers "deferred" (``{"type": 5}``, or ``{"type": 6}`` for a
component), so the service replies later through the interaction's token. Webhook events
are acknowledged with 204 as Discord asks.
"""

from __future__ import annotations

from typing import Any, Literal

from relay.configtypes import Duration, Rule, SourceBase
from relay.verify.asymmetric import Check, ed25519
from relay.verify.base import Handshake, Inbound, Rejected, header_bytes, json_object
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_timestamp

DEFERRED = {2: b'{"type": 5}', 3: b'{"type": 6}', 5: b'{"type": 5}'}
AUTOCOMPLETE_EMPTY = b'{"type": 8, "data": {"choices": []}}'


class DiscordSource(SourceBase):
    verify: Literal["discord"]
    public_key: str  # the application's public key, hex
    tolerance: Duration = DEFAULT_TOLERANCE
    idempotency_key: Rule = "json:/id"
    event_type: Rule = "json:/type"

    def build_verifier(self) -> DiscordVerifier:
        try:
            raw = bytes.fromhex(self.public_key.strip())
        except ValueError:
            raise ValueError("public_key must be the application's public key in hex") from None
        return DiscordVerifier(ed25519(raw), self.tolerance)


def _is_webhook_event(payload: dict[str, Any]) -> bool:
    return "event" in payload or ("version" in payload and "token" not in payload)


class DiscordVerifier:
    def __init__(self, check: Check, tolerance: float) -> None:
        self._check = check
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        signature = request.headers.get("X-Signature-Ed25519")
        stamp = request.headers.get("X-Signature-Timestamp")
        if signature is None or stamp is None:
            raise Rejected("missing X-Signature-Ed25519 or X-Signature-Timestamp header")
        check_timestamp(stamp, now, self._tolerance)
        try:
            given = bytes.fromhex(signature.strip())
        except ValueError:
            raise Rejected("signature is not hex") from None
        if not self._check(given, header_bytes(stamp) + request.body):
            raise Rejected("signature does not match")

    def handshake(self, request: Inbound) -> Handshake | None:
        payload = json_object(request.body)
        if payload is None:
            return None
        if _is_webhook_event(payload):
            return Handshake(204, b"") if payload.get("type") == 0 else None
        if payload.get("type") == 1:
            return Handshake(200, b'{"type": 1}', "application/json")
        return None

    def acknowledgement(self, request: Inbound) -> Handshake | None:
        payload = json_object(request.body)
        if payload is None:
            return None
        if _is_webhook_event(payload):
            return Handshake(204, b"")
        kind = payload.get("type")
        if kind == 4:
            return Handshake(200, AUTOCOMPLETE_EMPTY, "application/json")
        body = DEFERRED.get(kind) if isinstance(kind, int) else None
        return Handshake(200, body, "application/json") if body is not None else None
