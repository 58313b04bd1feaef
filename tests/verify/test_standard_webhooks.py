"""Standard Webhooks: signed with the official library, posted to the real relay."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict
from standardwebhooks import Webhook

from relay.verify import Inbound
from relay.verify.standard_webhooks import StandardWebhooksSource
from tests.helpers import Receiver, query, running, settings_for, wait_for

SECRET = "whsec_" + base64.b64encode(b"a-32-byte-secret-for-the-tests!!").decode()
OLD = "whsec_" + base64.b64encode(b"the-previous-secret-32-bytes-ok!").decode()
BODY = json.dumps({"type": "user.created", "data": {"id": 1}})


def headers(msg_id: str, secret: str, at: float, prefix: str = "webhook-") -> dict[str, str]:
    stamp = datetime.fromtimestamp(int(at), tz=UTC)
    return {
        f"{prefix}id": msg_id,
        f"{prefix}timestamp": str(int(at)),
        f"{prefix}signature": Webhook(secret).sign(msg_id, stamp, BODY),
        "Content-Type": "application/json",
    }


async def test_library_signatures_against_the_relay(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    source: dict[str, Any] = {"verify": "standard-webhooks", "secret": SECRET, "secrets": [OLD]}
    now = time.time()
    cases = [
        (BODY, headers("msg_1", SECRET, now), 200),
        (BODY, headers("msg_2", OLD, now), 200),  # rotation
        (BODY, headers("msg_3", SECRET, now, prefix="svix-"), 200),  # Svix header names
        (BODY.replace("1", "2"), headers("msg_4", SECRET, now), 401),  # tampered
        (BODY, headers("msg_5", "whsec_" + base64.b64encode(b"x" * 32).decode(), now), 401),
        (BODY, headers("msg_6", SECRET, now - 301), 401),  # stale
        (BODY, headers("msg_7", SECRET, now + 301), 401),  # from the future
    ]
    async with running(settings_for(db, receiver.url, only_source=source)) as relay:
        url = f"http://127.0.0.1:{relay.port}/in/demo"
        statuses = []
        for body, hdrs, _ in cases:
            async with client.post(url, data=body.encode(), headers=hdrs) as r:
                statuses.append(r.status)
        await wait_for(lambda: len(receiver.received) == 3)
    assert statuses == [expected for _, _, expected in cases]
    rows = query(db, "SELECT idempotency_key, event_type FROM events ORDER BY received_at")
    assert rows == [("msg_1", "user.created"), ("msg_2", "user.created"), (None, "user.created")]


def test_published_vector() -> None:
    """standard-webhooks repository tests (all languages): shared/reference/providers.md §5 #7."""
    source = StandardWebhooksSource.model_validate(
        {
            "name": "s",
            "verify": "standard-webhooks",
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        }
    )
    hdrs = CIMultiDict(
        {
            "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        }
    )
    inbound = Inbound("POST", "u", hdrs, b'{"test": 2432232314}', None)
    source.build_verifier().verify(inbound, 1614265330 + 10)
