"""GitHub: the published example from GitHub's docs, and a real delivery through the relay."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from relay.verify import Inbound, Rejected
from relay.verify.github import GithubSource
from tests.helpers import Receiver, query, running, settings_for, wait_for


def test_github_docs_vector() -> None:
    """docs.github.com "Validating webhook deliveries": secret and payload from the page."""
    source = GithubSource.model_validate(
        {"name": "g", "verify": "github", "secret": "It's a Secret to Everybody"}
    )
    verifier = source.build_verifier()
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    headers = CIMultiDict({"X-Hub-Signature-256": expected})
    verifier.verify(Inbound("POST", "u", headers, b"Hello, World!", None), 0)
    with pytest.raises(Rejected):
        verifier.verify(Inbound("POST", "u", headers, b"Hello, World?", None), 0)


async def test_github_delivery_with_presets(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    source: dict[str, Any] = {"verify": "github", "secret": "gh-secret", "secrets": ["gh-old"]}
    body = json.dumps({"action": "opened", "number": 7}).encode()

    def headers(key: str, delivery: str) -> dict[str, str]:
        digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        return {
            "X-Hub-Signature-256": f"sha256={digest}",
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": delivery,
            "Content-Type": "application/json",
        }

    async with running(settings_for(db, receiver.url, only_source=source)) as relay:
        url = f"http://127.0.0.1:{relay.port}/in/demo"
        statuses = []
        for key, delivery in [
            ("gh-secret", "d-1"),
            ("gh-old", "d-2"),
            ("nope", "d-3"),
            ("gh-secret", "d-1"),
        ]:  # the last is GitHub's redelivery of d-1
            async with client.post(url, data=body, headers=headers(key, delivery)) as r:
                statuses.append(r.status)
        await wait_for(lambda: len(receiver.received) == 2)
    assert statuses == [200, 200, 401, 200]
    assert query(db, "SELECT idempotency_key, event_type FROM events ORDER BY received_at") == [
        ("d-1", "pull_request"),
        ("d-2", "pull_request"),
    ]
