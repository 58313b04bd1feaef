"""Disk full: the database on a tiny tmpfs. No 2xx for what was not stored; recovery
without a restart once space returns. Needs root to mount: `make test` runs the suite as
root of a private namespace for other users (see the Makefile)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Receiver, mount, post, query, running, settings_for, wait_for


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint))
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


async def test_full_disk_gives_503_loses_no_ack_and_recovers(
    small_disk: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = small_disk / "relay.db"
    receiver.default = 503  # deliveries stay pending, so the database only grows
    settings = settings_for(db, receiver.url, retry={"base": 60, "cap": 60})
    body = b'{"pad": "' + b"x" * 8000 + b'"}'
    acked: list[str] = []
    async with running(settings) as relay:
        refused = None
        for _ in range(400):  # 1 MiB fills long before this
            status, headers, payload = await post(client, relay.port, body)
            if status == 200:
                acked.append(payload["id"])
                continue
            refused = (status, headers, payload)
            break
        assert refused is not None, "the disk never filled"
        print(f"\nacked before full: {len(acked)}; refused with {refused[0]}")
        assert refused[0] == 503
        assert len(acked) >= 10, f"only {len(acked)} events fit before the disk filled"
        async with client.get(f"http://127.0.0.1:{relay.port}/readyz") as ready:
            assert ready.status == 503

        mount("-t", "tmpfs", "-o", "remount,size=64m", "tmpfs", str(small_disk))
        status, _, payload = await post(client, relay.port, body)
        assert status == 200, payload  # the same process, no restart
        acked.append(payload["id"])

        async def is_ready() -> bool:
            async with client.get(f"http://127.0.0.1:{relay.port}/readyz") as response:
                return response.status == 200

        await wait_for(is_ready, timeout=10)
    stored = {row[0] for row in query(db, "SELECT id FROM events")}
    assert set(acked) <= stored, "an acknowledged event is missing"


async def test_a_full_disk_is_logged_as_one_story(
    small_disk: Path,
    receiver: Receiver,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 14: about 4 s of a full disk wrote 582 error lines with a traceback per retry.
    Now: a line when it starts, a summary at most every 10 s, a line when it clears."""
    db = small_disk / "relay.db"
    receiver.default = 503  # every attempt is recorded as a retry: the scheduler writes too
    settings = settings_for(db, receiver.url, retry={"base": 0.05, "cap": 0.1, "max_attempts": 99})
    body = b'{"pad": "' + b"x" * 8000 + b'"}'
    async with running(settings) as relay:
        for _ in range(400):  # until the disk is full
            if (await post(client, relay.port, body))[0] != 200:
                break
        caplog.clear()
        caplog.set_level(logging.INFO, logger="relay")
        deadline = asyncio.get_running_loop().time() + 4.0
        refused = 0
        while asyncio.get_running_loop().time() < deadline:  # 4 s of traffic on a full disk
            refused += (await post(client, relay.port, body))[0] == 503
            await asyncio.sleep(0.01)
        mount("-t", "tmpfs", "-o", "remount,size=64m", "tmpfs", str(small_disk))
        assert (await post(client, relay.port, body))[0] == 200

        async def is_ready() -> bool:
            async with client.get(f"http://127.0.0.1:{relay.port}/readyz") as response:
                return response.status == 200

        await wait_for(is_ready, timeout=10)
        await wait_for(lambda: "store.write.recovered" in [r.msg for r in caplog.records])
    assert refused > 50
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    messages = [r.msg for r in problems]
    assert len(problems) <= 8, f"{len(problems)} lines: {sorted(set(messages))}"
    assert all(r.exc_info is None for r in problems), "a traceback for a full disk"
    assert [r.msg for r in caplog.records].count("store.write.failing") <= 1
