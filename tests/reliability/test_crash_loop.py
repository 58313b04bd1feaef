"""Crash loop: concurrent signed load with duplicate keys, SIGKILL at random moments, 10 times.

A ledger of what was acknowledged proves, after the last restart:
1. every acknowledged event is in the database;
2. every delivery ended (none stuck pending);
3. every acknowledged event reached the receiver at least once, and repeats carry the
   same event id (so the receiver can tell);
4. a key posted many times has one event and one delivery, whatever the crashes.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Receiver, post, query, wait_for
from tests.process import RelayProcess, write_config

CYCLES = 10
WORKERS = 12
KEYS = 400  # markers draw keys from this pool, so duplicates are common


@pytest.mark.slow
async def test_acknowledged_events_survive_ten_sigkills(tmp_path: Path, receiver: Receiver) -> None:
    rng = random.Random(1123)
    db = tmp_path / "relay.db"
    relay = RelayProcess(write_config(tmp_path / "relay.toml", db, receiver.url))
    acked: dict[str, str] = {}  # idempotency key -> event id named by the 2xx
    counter = 0

    async def poster(session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        nonlocal counter
        for _ in range(5_000):  # bounded; the kill ends it much sooner
            if stop.is_set():
                return
            counter += 1
            key = f"k{rng.randrange(KEYS)}"
            body = json.dumps({"key": key, "n": counter}).encode()
            try:
                status, _, payload = await post(session, relay.port, body, key=key)
            except (aiohttp.ClientError, OSError):
                return
            if status == 200:
                previous = acked.setdefault(key, payload["id"])
                assert previous == payload["id"], f"{key} acknowledged as two events"

    try:
        for _ in range(CYCLES):
            relay.start()
            stop = asyncio.Event()
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
                workers = [asyncio.create_task(poster(s, stop)) for _ in range(WORKERS)]
                await asyncio.sleep(rng.uniform(0.2, 0.8))
                relay.kill()
                stop.set()
                await asyncio.wait_for(asyncio.gather(*workers), timeout=15)
        assert len(acked) > 100, f"too little load to prove anything ({len(acked)} keys)"

        relay.start()
        await wait_for(
            lambda: (
                query(db, "SELECT count(*) FROM deliveries WHERE state != 'delivered'") == [(0,)]
            ),
            timeout=60,
        )
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()

    events = dict(query(db, "SELECT idempotency_key, id FROM events"))
    # 1. durable: every acknowledged event is stored, under the id its 2xx named
    assert {k: events.get(k) for k in acked} == acked
    # 2. nothing stuck
    assert query(db, "SELECT count(*) FROM deliveries WHERE state != 'delivered'") == [(0,)]
    # 4. one event and one delivery per key
    per_key = query(
        db,
        "SELECT e.idempotency_key, count(*) FROM events e JOIN deliveries d "
        "ON d.event_id = e.id GROUP BY e.idempotency_key HAVING count(*) > 1",
    )
    assert per_key == []
    # 3. at least once, and repeats are recognisable by the stable event id
    seen: dict[str, set[str]] = defaultdict(set)
    for request in receiver.received:
        seen[json.loads(request.body)["key"]].add(request.headers["X-Relay-Event-Id"])
    for key, event_id in acked.items():
        assert seen[key] == {event_id}, (key, event_id, seen[key])
    print(
        f"\n{len(acked)} keys acknowledged over {CYCLES} kills; "
        f"{len(receiver.received)} deliveries received; at {time.strftime('%X')}"
    )
