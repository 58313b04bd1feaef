"""SendGrid's signed Event Webhook: ECDSA P-256 over timestamp + body.

The published vector is verify-only (ECDSA signatures are randomised); end to end, requests
are signed with a P-256 key made here, as SendGrid signs with its own."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from multidict import CIMultiDict

from relay.verify import Inbound
from relay.verify.sendgrid import SIGNATURE, TIMESTAMP, SendgridSource
from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases

KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
).decode()


def signed(
    name: str,
    body: bytes,
    status: int,
    at: int | None = None,
    key: ec.EllipticCurvePrivateKey = KEY,
) -> Case:
    stamp = str(at if at is not None else int(time.time()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {SIGNATURE: base64.b64encode(signature).decode(), TIMESTAMP: stamp}
    return Case(name, headers, body, status, forwarded=status == 200)


async def test_sendgrid_signed_events(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    events = [
        {
            "email": "a@example.com",
            "event": "delivered",
            "sg_event_id": "sg1",
            "timestamp": 1700000000,
        }
    ]
    body = json.dumps(events).encode() + b"\r\n"
    tampered = signed("tampered", body, 401)
    tampered.body = body.replace(b"delivered", b"bounce")
    cases = [
        signed("ok", body, 200),
        signed("other-key", body, 401, key=ec.generate_private_key(ec.SECP256R1())),
        tampered,
        signed("stale", body, 401, at=int(time.time()) - 301),
    ]
    source = {"verify": "sendgrid", "public_key": PUBLIC}
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.events() == [("sg1", "delivered", 1700000000.0)]


def test_sendgrid_published_vector() -> None:
    """sendgrid-python test/unit/test_eventwebhook.py (shared/reference/providers.md §5 #12)."""
    public_key = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe6"
        "2gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
    )
    payload = [
        {
            "email": "hello@world.com",
            "event": "dropped",
            "reason": "Bounced Address",
            "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
            "sg_message_id": (
                "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
            ),
            "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
            "timestamp": 1600112492,
        }
    ]
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode() + b"\r\n"
    signature = (
        "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15T"
        "luLtEZtM="
    )
    source = SendgridSource.model_validate(
        {"name": "s", "verify": "sendgrid", "public_key": public_key}
    )
    headers = CIMultiDict({SIGNATURE: signature, TIMESTAMP: "1600112502"})
    source.build_verifier().verify(Inbound("POST", "u", headers, body, None), 1600112502.0)
