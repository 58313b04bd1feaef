"""PostgreSQL going away under load (issue 28): three relays on one database whose server is
stopped (``pg_ctl stop -m fast``) for 5 s, twenty times, then restarted at once thirty
times, while signed requests keep coming.

Before: while the server was down, requests got 500 without Retry-After, each with a
traceback (a failed reconnect was not counted as a storage fault, so every batch was retried
op by op, one connection attempt per queued request); and once in 66 outages a relay's
connection was left in an aborted pipeline, neither closed nor broken, so that relay never
reconnected. Now: every refusal is a 503 with Retry-After, a few log lines per outage, each
relay ready again within 3 s of the server's return, and every acknowledged event stored
once and delivered.

The server here is a cluster of the test's own (the session's shared one stays up).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import psycopg
import pytest

from tests import postgres
from tests.helpers import Receiver, sign, wait_for
from tests.process import RelayProcess
from tests.test_cluster import cluster_config


@pytest.fixture(autouse=True)
def postgresql_installed() -> None:
    if not postgres.can_start():
        pytest.fail("PostgreSQL is not installed: make postgresql (as root) installs it")


# Seconds the server is down, outage after outage: twenty of 5 s, then thirty restarts at
# once (an aborted pipeline left behind by a restart wedged a relay once in 66 outages).
OUTAGES = [5.0] * 20 + [0.0] * 30
READY_WITHIN = 3.0  # seconds after the server is back
LOG_LINES_PER_OUTAGE = 8  # per relay: failing, a summary or two, recovered (writer, listener)
SENDERS = 6


class Load:
    """Signed requests to the relays in turn from a few concurrent senders, each with its
    own idempotency key; every answer recorded."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.answers: list[tuple[str, int, str | None, str]] = []  # key, status, Retry-After
        self.stop = asyncio.Event()
        self._keys = itertools.count()
        self.acknowledged = 0

    async def _sender(self, session: aiohttp.ClientSession, n: int) -> None:
        while not self.stop.is_set():
            key = f"k{next(self._keys)}"
            port = self.ports[int(key[1:]) % len(self.ports)]
            body = json.dumps({"key": key}).encode()
            headers = {
                "X-Signature": sign(body),
                "X-Request-Id": key,
                "Content-Type": "application/json",
            }
            try:
                async with session.post(
                    f"http://127.0.0.1:{port}/in/demo",
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    text = await response.text()
                    self.answers.append(
                        (key, response.status, response.headers.get("Retry-After"), text)
                    )
                    if response.status == 200:
                        self.acknowledged += 1
                    else:
                        await asyncio.sleep(0.05)  # a refused sender waits, as providers do
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.answers.append((key, 0, None, repr(exc)))

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._sender(session, n) for n in range(SENDERS)))


NOT_READY: dict[int, str] = {}  # port: what /readyz said last


async def _ready(session: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with session.get(
            f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(total=1)
        ) as response:
            NOT_READY[port] = f"{response.status} {await response.text()}"
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError) as exc:
        NOT_READY[port] = repr(exc)
        return False


ADMIN = '[admin]\nlisten = "127.0.0.1:0"\ntoken = "outage-admin"\n'


async def _ask_admin(relays: list[RelayProcess], answers: list[int], stop: asyncio.Event) -> None:
    """The admin API's reads during the outages: 200, or 503 while the database is away."""
    ports = []
    for relay in relays:
        found = re.search(r"msg=admin\.ready listen=\S+:(\d+)", relay.log.read_text())
        assert found is not None
        ports.append(int(found.group(1)))
    headers = {"Authorization": "Bearer outage-admin"}
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            for port in ports:
                for path in ("/api/events?limit=5", "/api/stats", "/api/dead"):
                    async with session.get(
                        f"http://127.0.0.1:{port}{path}", headers=headers
                    ) as response:
                        await response.read()
                        answers.append(response.status)
            await asyncio.sleep(0.2)


@pytest.mark.timeout(600)
async def test_postgresql_stopped_fifty_times_under_load(
    tmp_path: Path, receiver: Receiver
) -> None:
    base = Path(tempfile.mkdtemp(prefix="relay-pg-outage-"))
    try:
        sockets = postgres.start(base)
        url = postgres.create_database(sockets, "relay")
        await _outages(tmp_path, base, url, receiver)
    finally:
        with contextlib.suppress(OSError):  # the server's side of the story, kept
            shutil.copy(base / "postgres.log", tmp_path / "postgres.log")
        postgres.stop(base)


async def _outages(tmp_path: Path, base: Path, url: str, receiver: Receiver) -> None:
    relays = []
    for n in range(3):
        config = cluster_config(tmp_path / f"relay{n}.toml", url, receiver.url)
        config.write_text(config.read_text() + ADMIN)
        relays.append(RelayProcess(config))
    try:
        for relay in relays:
            relay.start(timeout=20)
        load = Load([relay.port for relay in relays])
        sending = asyncio.create_task(load.run())
        admin_answers: list[int] = []
        asking = asyncio.create_task(_ask_admin(relays, admin_answers, load.stop))
        slow: list[tuple[int, int, float, str | None]] = []  # outage, relay, seconds, why
        launches: list[float] = []  # seconds pg_ctl start took
        async with aiohttp.ClientSession() as session:
            await wait_for(lambda: len(load.answers) > 50, timeout=20)
            for outage, length in enumerate(OUTAGES):
                await asyncio.to_thread(postgres.halt, base)
                await asyncio.sleep(length)  # the outage's length: the test's input
                started = time.monotonic()
                await asyncio.to_thread(postgres.launch, base)
                back = time.monotonic()
                launches.append(round(back - started, 1))
                for n, relay in enumerate(relays):
                    with contextlib.suppress(AssertionError):
                        await wait_for(lambda p=relay.port: _ready(session, p), timeout=30)
                    took = time.monotonic() - back
                    if took > READY_WITHIN:
                        slow.append((outage, n, round(took, 1), NOT_READY.get(relay.port)))
                before = load.acknowledged
                await wait_for(lambda b=before: load.acknowledged > b + 30, timeout=30)
        load.stop.set()
        await sending
        await asking
        assert set(admin_answers) <= {200, 503}, sorted(set(admin_answers))
        assert 503 in admin_answers, "the admin API never saw the outage"

        statuses = {status for _, status, _, _ in load.answers}
        assert statuses <= {200, 503}, [a for a in load.answers if a[1] not in (200, 503)][:5]
        refused = [a for a in load.answers if a[1] == 503]
        assert refused, "the outages refused nothing: did the server stop?"
        assert all(retry is not None for _, _, retry, _ in refused), refused[:5]
        assert not slow, (
            f"(outage, relay, seconds to ready after the server's return): {slow}; "
            f"pg_ctl start took {launches}"
        )

        acknowledged = {key for key, status, _, _ in load.answers if status == 200}
        with psycopg.connect(url, autocommit=True) as conn:
            stored = conn.execute("SELECT idempotency_key, count(*) FROM events GROUP BY 1")
            counts = dict(stored.fetchall())
        assert acknowledged <= set(counts), sorted(acknowledged - set(counts))[:10]
        assert max(counts.values()) == 1

        def delivered() -> bool:
            return acknowledged <= {
                json.loads(r.body)["key"] for r in receiver.received if r.body.startswith(b"{")
            }

        await wait_for(delivered, timeout=60)
        for n, relay in enumerate(relays):
            assert relay.terminate() == 0
            lines = relay.log.read_text().splitlines()
            assert not [line for line in lines if "Traceback" in line], relay.log.read_text()[:3000]
            ready = next(i for i, line in enumerate(lines) if "msg=relay.ready" in line)
            told = lines[ready + 1 :]
            assert len(told) <= len(OUTAGES) * LOG_LINES_PER_OUTAGE, (n, len(told), told[:20])
    finally:
        for relay in relays:
            relay.ensure_stopped()
