"""``verify = "standard-webhooks"``: the Standard Webhooks scheme (also Svix's ``svix-*``).

``webhook-signature`` is a space-separated list of ``version,signature`` entries over
``"{webhook-id}.{webhook-timestamp}.{body}"``; any match passes:

- ``v1,<base64>``: HMAC-SHA256 keyed with the base64 bytes of a ``whsec_…`` secret;
- ``v1a,<base64>``: Ed25519, checked with a ``whpk_…`` public key (``public_key(s)``).

The timestamp must be within ``tolerance`` either way. Svix sends the same values as
``svix-id``, ``svix-timestamp``, ``svix-signature``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Literal

from relay.configtypes import Duration, Rule, SecretRef, SourceBase
from relay.verify.asymmetric import Check, ed25519
from relay.verify.base import Inbound, Rejected, any_equal, header_bytes
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_timestamp


class StandardWebhooksSource(SourceBase):
    verify: Literal["standard-webhooks"]
    secret: SecretRef | None = None  # whsec_<base64>
    secrets: tuple[SecretRef, ...] = ()
    public_key: str | None = None  # whpk_<base64>, for v1a (Ed25519) signatures
    public_keys: tuple[str, ...] = ()
    tolerance: Duration = DEFAULT_TOLERANCE
    idempotency_key: Rule = "header:webhook-id"  # for Svix: header:svix-id
    catch_up_api = "svix"
    event_type: Rule = "json:/type"
    occurred_at: Rule = "header:webhook-timestamp"

    def build_verifier(self) -> StandardWebhooksVerifier:
        values = [s.value for s in (self.secret, *self.secrets) if s is not None]
        publics = [p for p in (self.public_key, *self.public_keys) if p is not None]
        if not values and not publics:
            raise ValueError(
                'standard-webhooks needs a secret (secret = "env:WHSEC") or, for v1a '
                'signatures, a public key (public_key = "whpk_…")'
            )
        try:
            keys = tuple(decode_secret(v) for v in values)
        except ValueError as exc:
            raise ValueError(f"secret: {exc}") from None
        try:
            checks = tuple(ed25519(decode_secret(p, "whpk_")) for p in publics)
        except ValueError as exc:
            raise ValueError(f"public_key: {exc}") from None
        return StandardWebhooksVerifier(keys, checks, self.tolerance)


def decode_secret(secret: str, prefix: str = "whsec_") -> bytes:
    try:
        return base64.b64decode(secret.strip().removeprefix(prefix), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the key is not {prefix} followed by base64") from None


class StandardWebhooksVerifier:
    def __init__(self, keys: tuple[bytes, ...], checks: tuple[Check, ...], tolerance: float):
        self._keys = keys
        self._checks = checks
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
        entries = signature.split(" ")
        v1 = [header_bytes(e[3:]) for e in entries if e.startswith("v1,")]
        v1a = [e[4:] for e in entries if e.startswith("v1a,")] if self._checks else []
        if not v1 and not v1a:
            raise Rejected("no v1 signature in webhook-signature")
        expected = [base64.b64encode(hmac.digest(k, signed, "sha256")) for k in self._keys]
        if any_equal(expected, v1) or self._any_ed25519(v1a, signed):
            return
        raise Rejected("no signature matches")

    def _any_ed25519(self, given: list[str], signed: bytes) -> bool:
        for text in given:
            try:
                signature = base64.b64decode(header_bytes(text), validate=True)
            except (binascii.Error, ValueError):
                continue
            if any(check(signature, signed) for check in self._checks):
                return True
        return False
