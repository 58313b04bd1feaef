"""``verify = "postmark"``: Postmark signs nothing; it sends the Basic credentials of the
webhook URL (``https://user:pass@hooks.example.com/in/postmark``).

So this is ``basic`` with Postmark's metadata: ``RecordType`` (Delivery, Bounce, Open, …)
as the type. There is no idempotency key by default: one message's Delivery, Open and Click
records share its ``MessageID``, so keying on it would drop real events. Pair the source
with an ``allow_ips`` list of Postmark's published webhook addresses.
"""

from __future__ import annotations

from typing import Literal

from relay.configtypes import Rule
from relay.verify.basic import BasicSource


class PostmarkSource(BasicSource):
    verify: Literal["postmark"]  # type: ignore[assignment]
    idempotency_key: Rule = None
    event_type: Rule = "json:/RecordType"
