"""GitLab: the secret token, and the newer Standard Webhooks signing token (signed here with
the standardwebhooks library, as GitLab's signing token is a whsec_ secret)."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from standardwebhooks import Webhook

from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases

TOKEN, OLD_TOKEN = "gl-secret-token", "gl-previous-token"
SIGNING = "whsec_" + base64.b64encode(b"gitlab-signing-token-32-bytes!!!").decode()
BODY = json.dumps({"object_kind": "push", "ref": "refs/heads/main"})


def hook(uuid: str, **extra: str) -> dict[str, str]:
    return {
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Event-UUID": uuid,
        "Content-Type": "application/json",
        **extra,
    }


def signed(uuid: str, secret: str, at: float) -> dict[str, str]:
    stamp = int(at)
    signature = Webhook(secret).sign(uuid, datetime.fromtimestamp(stamp, tz=UTC), BODY)
    return hook(
        uuid,
        **{"webhook-id": uuid, "webhook-timestamp": str(stamp), "webhook-signature": signature},
    )


async def test_gitlab_token_and_signing_token(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    source = {"verify": "gitlab", "secret": TOKEN, "secrets": [OLD_TOKEN], "signing_token": SIGNING}
    body, now = BODY.encode(), time.time()
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    cases = [
        Case("token", hook("u1", **{"X-Gitlab-Token": TOKEN}), body, 200, forwarded=True),
        Case("rotated", hook("u2", **{"X-Gitlab-Token": OLD_TOKEN}), body, 200, forwarded=True),
        Case("wrong", hook("u3", **{"X-Gitlab-Token": "nope"}), body, 401),
        Case("missing", hook("u4"), body, 401),
        Case("signed", signed("u5", SIGNING, now), body, 200, forwarded=True),
        Case("signed-stale", signed("u6", SIGNING, now - 400), body, 401),
        Case("signed-wrong", signed("u7", other, now), body, 401),
        # A bad signature is not rescued by a good token: the signature must verify.
        Case(
            "no-fallback",
            {**signed("u8", other, now), "X-Gitlab-Token": TOKEN},
            body,
            401,
        ),
    ]
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.events() == [
        ("u1", "Push Hook", None),
        ("u2", "Push Hook", None),
        ("u5", "Push Hook", None),
    ]
