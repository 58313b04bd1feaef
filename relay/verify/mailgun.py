"""``verify = "mailgun"``: the signature inside Mailgun's webhook body.

JSON bodies carry ``{"signature": {"timestamp", "token", "signature"}, "event-data": …}``;
older form posts carry ``timestamp``, ``token`` and ``signature`` fields. The signature is
hex HMAC-SHA256 of ``timestamp + token``, keyed with the HTTP webhook signing key. It does
not cover ``event-data``: the timestamp window (900 s, as Mailgun's SDK) and the event id as
idempotency key are the replay defence.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs

from relay.configtypes import Duration, Rule, SharedSecretSource
from relay.verify.base import (
    Inbound,
    Rejected,
    any_equal,
    header_bytes,
    json_object,
    mac,
)
from relay.verify.timestamps import check_timestamp


class MailgunSource(SharedSecretSource):
    verify: Literal["mailgun"]
    tolerance: Duration = 900.0
    idempotency_key: Rule = "json:/event-data/id"
    event_type: Rule = "json:/event-data/event"
    occurred_at: Rule = "json:/event-data/timestamp"

    def build_verifier(self) -> MailgunVerifier:
        keys = self.keys('mailgun needs the signing key: secret = "env:MAILGUN_SIGNING_KEY"')
        return MailgunVerifier(keys, self.tolerance)


NAMES = ("timestamp", "token", "signature")


def _fields(body: bytes) -> list[object]:
    payload = json_object(body)
    if payload is not None:
        inner = payload.get("signature")
        found = inner if isinstance(inner, dict) else {}
        # Mailgun sends the timestamp as a string; accept a number too.
        return [
            str(v) if isinstance(v, int) and not isinstance(v, bool) else v
            for v in (found.get(name) for name in NAMES)
        ]
    try:
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=1000)
    except ValueError:
        return [None, None, None]
    return [form.get(name, [None])[0] for name in NAMES]


class MailgunVerifier:
    def __init__(self, keys: tuple[bytes, ...], tolerance: float) -> None:
        self._keys = keys
        self._tolerance = tolerance

    def verify(self, request: Inbound, now: float) -> None:
        stamp, token, signature = _fields(request.body)
        if not (isinstance(stamp, str) and isinstance(token, str) and isinstance(signature, str)):
            raise Rejected("missing signature.timestamp, signature.token or signature.signature")
        check_timestamp(stamp, now, self._tolerance)
        signed = header_bytes(stamp) + header_bytes(token)
        expected = [mac(k, signed).hex().encode() for k in self._keys]
        if not any_equal(expected, [header_bytes(signature.strip().lower())]):
            raise Rejected("signature does not match")
