"""``verify = "intercom"``: ``X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>``.

Keyed with the app's client secret. No timestamp is signed; the notification ``id``
(``notif_…``) is the idempotency key and ``topic`` the type. The "ping" notification
Intercom sends when a subscription is saved is stored like any other event.
"""

from __future__ import annotations

from typing import Literal

from relay.configtypes import Rule
from relay.verify.hmac import HmacSource


class IntercomSource(HmacSource):
    verify: Literal["intercom"]  # type: ignore[assignment]
    header: str = "X-Hub-Signature"
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha1"
    prefix: str = "sha1="
    idempotency_key: Rule = "json:/id"
    event_type: Rule = "json:/topic"
    occurred_at: Rule = "json:/created_at"
