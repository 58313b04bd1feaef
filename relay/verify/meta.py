"""``verify = "meta"``: WhatsApp Cloud API, Messenger and Instagram webhooks.

``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` keyed with the App Secret.
Meta signs the bytes it sends (its JSON escapes non-ASCII as ``\\u00e4``), so the raw body is
what counts. Meta batches changes into ``entry[]``, so there is no one envelope id: the
default idempotency key is none (set ``json:/entry/0/changes/0/value/messages/0/id`` for
WhatsApp messages, for example).

Handshake: when the callback URL is saved, Meta sends ``GET ?hub.mode=subscribe&
hub.verify_token=…&hub.challenge=…``. relay answers the challenge if the token matches
``verify_token``, and 403 otherwise.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs

from relay.configtypes import Rule, SecretRef
from relay.verify.base import Handshake, Inbound, any_equal, header_bytes, secrets_of
from relay.verify.hmac import HmacSource, HmacVerifier


class MetaSource(HmacSource):
    verify: Literal["meta"]  # type: ignore[assignment]
    header: str = "X-Hub-Signature-256"
    prefix: str = "sha256="
    verify_token: SecretRef | None = None  # the "Verify token" typed into Meta's dashboard
    idempotency_key: Rule = None
    event_type: Rule = "json:/object"
    occurred_at: Rule = "json:/entry/0/time"

    def build_verifier(self) -> HmacVerifier:
        verifier = super().build_verifier()
        assert isinstance(verifier, MetaVerifier)
        verifier.tokens = secrets_of(self.verify_token, ())
        return verifier


class MetaVerifier(HmacVerifier):
    """The body's HMAC, plus the GET subscription check."""

    tokens: tuple[bytes, ...] = ()

    def challenge(self, request: Inbound) -> Handshake:
        params = parse_qs(request.query_string, max_num_fields=20)
        mode = params.get("hub.mode", [""])[0]
        token = params.get("hub.verify_token", [""])[0]
        challenge = params.get("hub.challenge", [""])[0]
        if mode != "subscribe" or not challenge:
            return Handshake(400, b"expected hub.mode=subscribe and a hub.challenge")
        if not self.tokens or not any_equal(self.tokens, [header_bytes(token)]):
            return Handshake(403, b"hub.verify_token does not match")
        return Handshake(200, challenge.encode())


MetaSource.verifier_class = MetaVerifier
