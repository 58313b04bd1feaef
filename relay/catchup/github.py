"""GitHub: pushed. GitHub never retries a failed delivery; it keeps a log of deliveries
(``GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries``, the same under
``/orgs/{org}/hooks/{hook_id}`` and ``/app/hook`` for an App), newest first, 100 a page,
the next page in the ``Link`` header (tests/catchup/openapi/github-hook-deliveries.json).
relay asks for a redelivery (``POST …/deliveries/{id}/attempts``) of each event in the
window it has no event for, by ``guid`` (which ``X-GitHub-Delivery`` carries): deliveries
that failed (a 502, a connection error) and any other it lacks. The redelivery arrives as an
ordinary signed webhook with the same ``X-GitHub-Delivery``."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

from relay.catchup.api import Api
from relay.catchup.target import Found, Target, inside, parse_rfc3339
from relay.configtypes import CatchUpConfig
from relay.records import Tally, Window

BASE_URL = "https://api.github.com"
RETENTION = 3 * 86400.0  # GitHub redelivers deliveries of the past 3 days
PAGE = 100
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


def headers(config: CatchUpConfig) -> dict[str, str]:
    token = config.api_key.value
    if config.hook == "app":
        assert config.app_id is not None  # checked with the config
        token = app_jwt(token, config.app_id, time.time())
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }


def app_jwt(private_key_pem: str, app_id: str, now: float) -> str:
    """The JWT a GitHub App signs in with (RS256, 9 minutes; issued a minute back for
    clock drift), as GitHub's documentation describes."""
    # Imported here: only an App's catch-up needs RSA (cryptography is large to load).
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("catch_up.api_key: a GitHub App's private key is an RSA PEM")
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"iat": int(now) - 60, "exp": int(now) + 540, "iss": app_id}).encode())
    signed = f"{head}.{claims}".encode()
    signature = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{claims}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _path(config: CatchUpConfig) -> str:
    return "/app/hook/deliveries" if config.hook == "app" else f"/{config.hook}/deliveries"


async def run(api: Api, config: CatchUpConfig, window: Window, target: Target) -> Found:
    base = _path(config)
    latest: dict[str, dict[str, Any]] = {}  # guid: its newest delivery in the window
    url: str | None = base
    params: dict[str, Any] | None = {"per_page": PAGE}
    while url is not None:
        answer = await api.get(url, params)
        params = None  # the next link carries them
        page = answer.data
        if not isinstance(page, list):
            raise ValueError("github: the deliveries list is not a list")
        oldest = None
        for delivery in page:
            if not isinstance(delivery, dict) or not isinstance(delivery.get("guid"), str):
                continue
            at = parse_rfc3339(str(delivery.get("delivered_at")))
            oldest = at if oldest is None else min(oldest, at)
            if inside(window, at):
                guid = delivery["guid"]
                if guid not in latest or delivery.get("id", 0) > latest[guid].get("id", 0):
                    latest[guid] = delivery
        # Newest first: a page that reaches before the window is the last one needed.
        if not page or (oldest is not None and oldest < window.since):
            break
        found = _NEXT.search(answer.headers.get("Link", ""))
        url = found.group(1) if found else None
    had = await target.known(list(latest))
    missing = [d for guid, d in latest.items() if guid not in had]
    if not target.dry_run:
        for delivery in missing:
            await api.post(f"{base}/{int(delivery['id'])}/attempts")
    return Found(Tally(len(latest), 0, len(had), len(missing)))
