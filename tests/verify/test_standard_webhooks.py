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
        (BODY, headers("msg_7", SECRET, now + 305), 401),  # from the future (int() truncates)
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


async def test_svix_sdk_and_ed25519_signatures(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Signed by Svix's own SDK (svix-* headers), and v1a (Ed25519) signatures checked with
    a whpk_ public key; a v1a signature by another key is refused."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from svix.webhooks import Webhook as SvixWebhook

    from tests.verify.harness import Case, run_cases

    private, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    now = int(time.time())

    def svix(msg_id: str, secret: str) -> dict[str, str]:
        signature = SvixWebhook(secret).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), BODY)
        return {"svix-id": msg_id, "svix-timestamp": str(now), "svix-signature": signature}

    def v1a(msg_id: str, key: Ed25519PrivateKey, at: int = now) -> dict[str, str]:
        signed = f"{msg_id}.{at}.{BODY}".encode()
        signature = base64.b64encode(key.sign(signed)).decode()
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(at),
            "webhook-signature": f"v1a,{signature}",
        }

    source = {
        "verify": "standard-webhooks",
        "secret": SECRET,
        "public_key": "whpk_" + base64.b64encode(public).decode(),
        "idempotency_key": "json:/data/id",
    }
    body = BODY.encode()
    cases = [
        Case("svix", svix("msg_s1", SECRET), body, 200, forwarded=True),
        Case("svix-wrong", svix("msg_s2", OLD), body, 401),
        Case("v1a", v1a("msg_a1", private), body.replace(b"1", b"3"), 401),  # tampered
        Case("v1a-stranger", v1a("msg_a2", stranger), body, 401),
        Case("v1a-stale", v1a("msg_a3", private, now - 400), body, 401),
    ]
    # The good v1a last: the body's data.id is the key, so it would be a duplicate of "svix".
    other = BODY.replace('"id": 1', '"id": 2')
    good = v1a("msg_a4", private)
    good["webhook-signature"] = (
        "v1a," + base64.b64encode(private.sign(f"msg_a4.{now}.{other}".encode())).decode()
    )
    cases.append(Case("v1a-good", good, other.encode(), 200, forwarded=True))
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert [key for key, _, _ in result.events()] == ["1", "2"]
