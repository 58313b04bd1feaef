"""Schemes that sign nothing: telegram (secret token header), basic, postmark (Basic
credentials in the URL), and the generic HMAC with a signed timestamp header."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import aiohttp

from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases


async def test_telegram_secret_token(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """core.telegram.org/bots/api#setwebhook: X-Telegram-Bot-Api-Secret-Token."""
    body = json.dumps({"update_id": 10000, "message": {"text": "hi"}}).encode()
    header = "X-Telegram-Bot-Api-Secret-Token"
    cases = [
        Case("ok", {header: "Tg_secret-1"}, body, 200, forwarded=True),
        Case("rotated", {header: "Tg_secret-0"}, body, 200),  # same update_id: duplicate
        Case("wrong", {header: "Tg_secret-2"}, body, 401),
        Case("missing", {}, body, 401),
    ]
    source = {"verify": "telegram", "secret": "Tg_secret-1", "secrets": ["Tg_secret-0"]}
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.events() == [("10000", None, None)]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


async def test_postmark_basic_credentials(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """postmarkapp.com/developer/webhooks/webhooks-overview: Basic auth from the URL."""
    body = json.dumps({"RecordType": "Delivery", "MessageID": "m-1"}).encode()
    cases = [
        Case("ok", basic("postmark", "pw-now"), body, 200, forwarded=True),
        Case("rotated", basic("postmark", "pw-before"), body, 200, forwarded=True),
        Case("wrong-user", basic("someone", "pw-now"), body, 401),
        Case("wrong-password", basic("postmark", "nope"), body, 401),
        Case("bearer", {"Authorization": "Bearer pw-now"}, body, 401),
    ]
    source = {
        "verify": "postmark",
        "username": "postmark",
        "password": "pw-now",
        "passwords": ["pw-before"],
    }
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.events() == [(None, "Delivery", None), (None, "Delivery", None)]
    # The rejections table shows why, never the credentials.
    rejected = result.rejections()
    assert [status for status, _, _ in rejected] == [401, 401, 401]
    assert all("pw-" not in headers and "[redacted]" in headers for _, _, headers in rejected)


async def test_hmac_with_signed_timestamp(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    secret = "in-house-secret"
    body = b'{"id": "e1"}'

    def case(name: str, at: int, status: int, separator: str = ":") -> Case:
        signed = f"{at}{separator}".encode() + body
        mac = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        return Case(name, {"X-Sig": mac, "X-Ts": str(at)}, body, status, forwarded=status == 200)

    now = int(time.time())
    source = {
        "verify": "hmac",
        "secret": secret,
        "header": "X-Sig",
        "timestamp_header": "X-Ts",
        "separator": ":",
        "tolerance": "1m",
        "idempotency_key": "json:/id",
    }
    cases = [
        case("ok", now, 200),
        case("other-separator", now, 401, separator="."),
        case("stale", now - 61, 401),
        case("future", now + 65, 401),  # margin: int() truncation and the time to post
    ]
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.events() == [("e1", None, None)]
