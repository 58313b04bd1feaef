"""A provider's REST API as catch-up speaks it: JSON over HTTPS with the source's key, rate
limits honoured, transient failures retried a bounded number of times.

Waits: ``429`` (and GitHub's ``403`` with ``Retry-After`` or an exhausted
``x-ratelimit-remaining``) wait what the provider says, at most ``MAX_WAIT`` each; ``5xx``
and connection failures back off 1, 2, 4, 8 s. After ``ATTEMPTS`` tries, or a wait longer
than ``MAX_WAIT``, ProviderError names the provider's last answer. Any other ``4xx`` is
final at once (a wrong key does not get better by asking again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from relay import __version__

log = logging.getLogger("relay.catchup")

ATTEMPTS = 5  # tries of one request before the run fails
MAX_WAIT = 60.0  # the longest single wait relay accepts from a provider's rate limit
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
MAX_BODY = 32 * 1024 * 1024  # a page larger than this is not a page


class ProviderError(Exception):
    """The provider refused or failed; ``str()`` says what it answered, for people."""

    def __init__(self, message: str, status: int | None = None, final: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.final = final  # asking again will not help (a bad key, a wrong hook)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    data: Any


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the provider asks to wait: ``Retry-After`` (seconds or an HTTP date), or
    GitHub's ``x-ratelimit-reset`` when ``x-ratelimit-remaining`` is 0; None if neither."""
    raw = headers.get("Retry-After")
    if raw is not None:
        raw = raw.strip()
        if raw.isdigit():
            return float(raw)
        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - now)
        except (TypeError, ValueError):
            return None
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            return max(0.0, float(reset) - now)
    return None


def _excerpt(data: Any, text: str) -> str:
    """The provider's own error message, short: Stripe's error.message, GitHub's message,
    Paddle's error.detail, Svix's detail; else the start of the body."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            for key in ("message", "detail", "code"):
                if isinstance(error.get(key), str):
                    return str(error[key])[:200]
        for key in ("message", "detail", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])[:200]
    return " ".join(text.split())[:200] or "(no body)"


class Api:
    """One provider's API for one run: ``get`` and ``post`` of JSON, paths relative to
    ``base_url`` (or whole URLs on the same host, as pagination links are)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._session = session
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._headers = {"User-Agent": f"relay/{__version__} (catch-up)", **headers}
        self._sleep = sleep
        self.requests = 0  # made in this run, for the log

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            if not path.startswith(self.base_url + "/"):
                # A pagination link elsewhere would send the key to another host.
                raise ProviderError(f"{self.provider}: a link left {self.base_url}: {path[:100]}")
            return path
        return self.base_url + path

    async def get(self, path: str, params: Any = None) -> Answer:
        return await self._call("GET", path, params=params)

    async def post(self, path: str, body: Any = None) -> Answer:
        return await self._call("POST", path, body=body)

    async def _call(self, method: str, path: str, params: Any = None, body: Any = None) -> Answer:
        url = self.url(path)
        backoff = 1.0
        last = "no answer"
        for attempt in range(1, ATTEMPTS + 1):
            self.requests += 1
            wait: float | None = None
            try:
                async with self._session.request(
                    method,
                    url,
                    params=params,
                    data=json.dumps(body).encode() if body is not None else None,
                    headers={**self._headers, "Content-Type": "application/json"}
                    if body is not None
                    else self._headers,
                    timeout=TIMEOUT,
                    allow_redirects=False,
                ) as response:
                    raw = await response.content.read(MAX_BODY + 1)
                    text = raw[:MAX_BODY].decode("utf-8", "replace")
                    try:
                        data = json.loads(text) if text.strip() else None
                    except ValueError:
                        data = None
                    status = response.status
                    if 200 <= status < 300:
                        if len(raw) > MAX_BODY:
                            raise ProviderError(f"{self.provider}: an answer over 32 MB")
                        return Answer(status, response.headers, data)
                    last = f"HTTP {status}: {_excerpt(data, text)}"
                    limited = status == 429 or (
                        status == 403 and retry_after(response.headers, time.time()) is not None
                    )
                    if limited:
                        wait = retry_after(response.headers, time.time())
                        wait = 1.0 if wait is None else wait
                        if wait > MAX_WAIT:
                            raise ProviderError(
                                f"{self.provider}: rate limited ({last}); it asks to wait "
                                f"{math.ceil(wait)} s, longer than relay waits in a run",
                                status,
                            )
                    elif status < 500:
                        raise ProviderError(f"{self.provider}: {last}", status, final=True)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__
            if attempt == ATTEMPTS:
                break
            if wait is None:
                wait, backoff = backoff, backoff * 2
            log.info(
                "catch_up.waiting",
                extra={"fields": {"provider": self.provider, "seconds": wait, "after": last}},
            )
            await self._sleep(wait)
        raise ProviderError(f"{self.provider}: {last} (after {ATTEMPTS} tries)")
