"""Real parts for tests: a scriptable HTTP receiver, a relay on a real SQLite file, signing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relay.app import Relay
from relay.clock import Clock
from relay.config import Settings

SECRET = "test-secret"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Received:
    at: float  # time.monotonic() when the request arrived
    headers: dict[str, str]
    body: bytes
    host: str
    answer: Any = None  # the script entry that answered


@dataclass
class Receiver:
    """An aiohttp app on 127.0.0.1 that answers from a script and records what it saw.

    ``script`` is consumed one entry per request; when empty, ``default`` answers. An entry
    is a status, a (status, headers) pair, "hang" (sleep past any client timeout) or "slow"
    (200 after 0.3 s).
    """

    script: list[Any] = field(default_factory=list)
    default: Any = 200
    received: list[Received] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            body = await request.read()
            entry = self.script.pop(0) if self.script else self.default
            if callable(entry):  # decides per request, e.g. at random
                entry = entry()
            self.received.append(
                Received(time.monotonic(), dict(request.headers), body, request.host, entry)
            )
            if entry == "hang":
                await asyncio.sleep(60)
                return web.Response(status=200)
            if entry == "slow":  # answers 200 after a moment
                await asyncio.sleep(0.3)
                return web.Response(status=200)
            status, headers = entry if isinstance(entry, tuple) else (entry, {})
            return web.Response(status=status, headers=headers, text=f"answer {status}")
        finally:
            self.inflight -= 1

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def event_ids(self) -> list[str]:
        return [r.headers["X-Relay-Event-Id"] for r in self.received]


def settings_for(db: Path, url: str, **overrides: Any) -> Settings:
    """A config with one HMAC source 'demo' routed to one destination 'app' at ``url``."""
    retry = {"max_attempts": 5, "base": 0.05, "cap": 0.2, **overrides.pop("retry", {})}
    destination = {"name": "app", "url": url, "timeout": 2.0, "retry": retry}
    destination.update(overrides.pop("destination", {}))
    source = {
        "name": "demo",
        "verify": "hmac",
        "secret": SECRET,
        "prefix": "sha256=",
        "idempotency_key": "header:X-Request-Id",
        "event_type": "json:/type",
    }
    source.update(overrides.pop("source", {}))
    if "only_source" in overrides:  # a whole source of another scheme, in place of 'demo'
        source = {"name": "demo", **overrides.pop("only_source")}
    data: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:0", "shutdown_grace": 1.0, **overrides.pop("server", {})},
        "storage": {"path": str(db), **overrides.pop("storage", {})},
        "sources": [source],
        "destinations": [destination],
        "routes": [{"source": "demo", "destinations": ["app"]}],
        **overrides,
    }
    return Settings(**data)


class SteppedClock(Clock):
    """The real time plus an offset a test moves forward: a lane then sees a cooldown or an
    outage pass at once (wake it with ``notify()`` after ``advance``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class HeldClock(Clock):
    """The real wall time, and a monotonic time that moves only when the test says: rate
    limits then decide the same on a fast machine and a busy one."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.asynccontextmanager
async def running(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Relay]:
    relay = Relay(settings, clock=clock)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


async def post(
    session: aiohttp.ClientSession,
    port: int,
    body: bytes,
    *,
    key: str | None = None,
    signature: str | None = None,
    content_type: str = "application/json",
    source: str = "demo",
    extra: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": content_type, "X-Signature": signature or sign(body)}
    if key is not None:
        headers["X-Request-Id"] = key
    headers.update(extra or {})
    async with session.post(
        f"http://127.0.0.1:{port}/in/{source}", data=body, headers=headers
    ) as response:
        text = await response.text()
        payload = json.loads(text) if text.startswith("{") else text
        return response.status, dict(response.headers), payload


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, step: float = 0.02
) -> None:
    """Poll until ``predicate`` holds; fail after ``timeout`` seconds (bounded loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")


def query(db: Path, statement: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the database the way an operator would: a separate sqlite3 connection."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return list(conn.execute(statement, tuple(params)))


BODY_JSON = b'{"id": "evt_1", "type": "invoice.paid"}'


def mount(*args: str) -> None:
    """``mount ARGS``, for tests that need a real file system to fail (full, read-only).

    Only root may mount. ``make test`` gives any other user a private user and mount
    namespace in which they are root (see the Makefile), so these tests run for everyone;
    a plain ``pytest`` as another user fails here and says how to run them. A mount that
    fails fails the test with mount's own message: a broken setup never passes as a skip.
    """
    if os.geteuid() != 0:
        pytest.fail(
            "this test mounts a file system: run the suite with `make test`, which runs it "
            "in a private mount namespace for users other than root (or run it as root)"
        )
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed: {result.stderr.strip()}")
