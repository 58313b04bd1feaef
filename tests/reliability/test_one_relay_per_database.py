"""A second relay on a database another live relay uses refuses to start (issue 14).

Before: it started silently, released the first one's leases at start, and the deliveries
that were in flight went out twice.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.helpers import post, query, wait_for
from tests.process import RelayProcess, run_cli, write_config


class HeldReceiver:
    """Counts every delivery by event id and holds each until ``release`` is set."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.release = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        event = request.headers["X-Relay-Event-Id"]
        self.seen[event] = self.seen.get(event, 0) + 1
        await self.release.wait()
        return web.Response(text="ok")

    async def start(self) -> HeldReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_second_relay_exits_and_the_first_delivers_nothing_twice(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    receiver = await HeldReceiver().start()
    db = tmp_path / "relay.db"
    url = f"http://127.0.0.1:{receiver.port}/hook"
    config = write_config(tmp_path / "relay.toml", db, url)
    # The receiver holds the attempts until released: they must not time out meanwhile.
    config.write_text(config.read_text().replace('timeout = "2s"', 'timeout = "60s"'))
    first = RelayProcess(config)
    try:
        first.start()
        for i in range(3):
            status, _, _ = await post(client, first.port, json.dumps({"n": i}).encode())
            assert status == 200
        await wait_for(lambda: len(receiver.seen) == 3)  # three attempts now in flight

        second_config = write_config(tmp_path / "second.toml", db, url)
        started = time.monotonic()
        second = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "relay", "serve", "--config", str(second_config)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        assert time.monotonic() - started < 5
        assert second.returncode == 1, second.stdout + second.stderr
        assert first.proc is not None
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert str(db) in lines[0]
        assert f"pid {first.proc.pid}" in lines[0]

        # The sqlite3 shell's way and the CLI's read commands still work beside it.
        assert query(db, "SELECT count(*) FROM events") == [(3,)]
        listed = run_cli("events", "--config", str(first.config), "--json")
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 3

        # The first relay goes on serving and finishes what was in flight, once each.
        status, _, _ = await post(client, first.port, b'{"n": 3}')
        assert status == 200
        receiver.release.set()
        delivered = "SELECT count(*) FROM deliveries WHERE state = 'delivered'"
        await wait_for(lambda: query(db, delivered) == [(4,)])
        assert first.terminate() == 0
    finally:
        first.ensure_stopped()
        await receiver.stop()
    assert sorted(receiver.seen.values()) == [1, 1, 1, 1]


async def test_the_lock_goes_with_the_process(tmp_path: Path) -> None:
    """A relay killed with SIGKILL leaves no stale lock: the next one starts."""
    db = tmp_path / "relay.db"
    relay = RelayProcess(write_config(tmp_path / "relay.toml", db, "http://127.0.0.1:9/"))
    try:
        relay.start()
        relay.kill()
        relay.start()
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
