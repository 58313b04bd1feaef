"""Crash safety with the relay as a subprocess: restart, SIGKILL under load, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import aiohttp

from tests.helpers import Receiver, post, query, wait_for
from tests.process import RelayProcess, write_config


async def test_pending_deliveries_are_delivered_after_restart(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    relay = RelayProcess(write_config(tmp_path / "relay.toml", db, receiver.url))
    receiver.default = "hang"  # attempts stay in flight until the relay stops
    try:
        relay.start()
        for i in range(5):
            status, _, _ = await post(client, relay.port, json.dumps({"n": i}).encode())
            assert status == 200
        await wait_for(lambda: len(receiver.received) == 5)
        assert relay.terminate() == 0  # graceful: in-flight attempts cancelled after the grace
        assert query(db, "SELECT count(*) FROM deliveries WHERE state = 'pending'") == [(5,)]

        receiver.default = 200
        receiver.received.clear()
        relay.start()
        await wait_for(lambda: len(receiver.received) == 5, timeout=10)
        await wait_for(
            lambda: query(db, "SELECT count(*) FROM deliveries WHERE state = 'delivered'") == [(5,)]
        )
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    assert sorted(json.loads(r.body)["n"] for r in receiver.received) == [0, 1, 2, 3, 4]


async def test_every_acknowledged_event_is_delivered_after_sigkill(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Concurrent load, SIGKILL at a random moment, restart: no acknowledged event is lost."""
    db = tmp_path / "relay.db"
    relay = RelayProcess(write_config(tmp_path / "relay.toml", db, receiver.url))
    acked: set[str] = set()
    stop_posting = asyncio.Event()

    async def poster(worker: int, session: aiohttp.ClientSession) -> None:
        for n in range(10_000):  # bounded; the kill ends it much sooner
            if stop_posting.is_set():
                return
            marker = f"{worker}-{n}"
            try:
                status, _, _ = await post(session, relay.port, json.dumps({"m": marker}).encode())
            except (aiohttp.ClientError, OSError):
                return  # the relay died under us: this request was never acknowledged
            if status == 200:
                acked.add(marker)

    try:
        relay.start()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            workers = [asyncio.create_task(poster(w, session)) for w in range(16)]
            await asyncio.sleep(random.uniform(0.6, 1.5))
            relay.kill()
            stop_posting.set()
            await asyncio.wait_for(asyncio.gather(*workers), timeout=15)
        print(f"acked before SIGKILL: {len(acked)}")
        assert len(acked) > 50, f"too little load to prove anything ({len(acked)} acks)"

        relay.start()

        def delivered() -> set[str]:
            return {json.loads(r.body)["m"] for r in receiver.received}

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not acked <= delivered():
            await asyncio.sleep(0.1)
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    missing = acked - delivered()
    assert not missing, (
        f"{len(missing)} acknowledged events never delivered, e.g. {sorted(missing)[:5]}"
    )
    stored = query(db, "SELECT count(*) FROM events")[0][0]
    assert stored >= len(acked)
