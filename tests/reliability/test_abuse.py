"""Abuse: per-source and per-client rate limits, and a bounded number of connections."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp

from relay.ratelimit import Buckets, TokenBucket
from tests.helpers import HeldClock, Receiver, post, query, running, settings_for, wait_for


def test_token_bucket_grants_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == 0.5  # one token comes every 0.5 s
    assert bucket.take(0.5) == 0.0
    assert bucket.take(10.0) == 0.0  # refills, but never beyond the burst
    assert [bucket.take(10.0) for _ in range(3)][-1] > 0


def test_buckets_are_per_key_and_bounded() -> None:
    buckets = Buckets(rate=1.0, burst=1, max_keys=2)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) > 0
    assert buckets.take("b", 0.0) == 0.0  # another client is not affected
    buckets.take("c", 0.0)  # a third key evicts the oldest ("a")
    assert buckets.take("a", 0.0) == 0.0


async def test_source_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, source={"rate_limit": {"rate": 2, "burst": 5}})
    clock = HeldClock()  # however long the posts take here, no token comes back meanwhile
    async with running(settings, clock) as relay:
        answers = [await post(client, relay.port, b'{"n": %d}' % i) for i in range(8)]
        clock.advance(0.6)  # one token back at 2/s
        later = await post(client, relay.port, b'{"n": 99}')
    statuses = [status for status, _, _ in answers]
    assert statuses == [200] * 5 + [429] * 3
    assert all(int(h["Retry-After"]) >= 1 for s, h, _ in answers if s == 429)
    assert later[0] == 200
    assert query(db, "SELECT count(*) FROM events") == [(6,)]  # refused ones were not stored


async def test_client_rate_limit_spares_other_clients(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    limit = {"client_rate_limit": {"rate": 0.5, "burst": 3}}
    async with running(settings_for(db, receiver.url, source=limit), HeldClock()) as relay:
        noisy = [(await post(client, relay.port, b"{}"))[0] for _ in range(5)]
        other_address = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=other_address) as other:
            quiet = [(await post(other, relay.port, b"{}"))[0] for _ in range(3)]
    assert noisy == [200, 200, 200, 429, 429]
    assert quiet == [200, 200, 200]


async def test_at_the_cap_idle_connections_make_room_and_busy_ones_do_not(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Eviction (relay.listener): a new connection at max_connections closes the oldest idle
    one; connections with a request in progress are never closed for it, and when every one
    is busy the newcomer gets 503. This also pins the aiohttp internals the guard reads."""
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, server={"max_connections": 5, "read_timeout": 5})
    head = b"POST /in/demo HTTP/1.1\r\nHost: r\r\nX-Signature: x\r\nContent-Length: 100\r\n\r\n{"
    async with running(settings) as relay:
        idle = [await asyncio.open_connection("127.0.0.1", relay.port) for _ in range(5)]
        status, _, _ = await post(client, relay.port, b'{"room": "made"}')
        assert status == 200  # the oldest idle connection was closed for it
        assert await idle[0][0].read() == b""
        busy = []
        for _ in range(5):  # requests whose bodies are still coming: busy
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(head)
            await writer.drain()
            busy.append((reader, writer))
        await wait_for(lambda: relay.guard.evicted >= 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        async with asyncio.timeout(5):
            refused = await reader.read(1024)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 503"), refused
        for _, writer in busy:
            writer.write(b"}" * 99)  # the busy ones were kept: they finish normally
        async with asyncio.timeout(5):
            answers = [await r.read(12) for r, _ in busy]
        assert answers == [b"HTTP/1.1 401"] * 5  # signature "x": refused, but answered
        for _, writer in [*idle, *busy]:
            with contextlib.suppress(ConnectionError):
                writer.close()
