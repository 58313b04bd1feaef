"""Slow and idle connections cannot lock real webhooks out (issue 14).

Before: 1,000 connections sending their headers a byte at a time filled max_connections,
and 12 of 50 real webhooks got a 2xx. The relay runs as its own process; the attacker and
the real sender are tasks of the test, on different loopback addresses.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Receiver, sign
from tests.process import RelayProcess, write_config


async def _real_webhooks(port: int, count: int) -> list[tuple[int, float]]:
    """``count`` signed webhooks from 127.0.0.1, each on a new connection: (status, seconds)."""
    results = []
    connector = aiohttp.TCPConnector(force_close=True, local_addr=("127.0.0.1", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(count):
            body = b'{"type": "real", "n": %d}' % i
            headers = {"X-Signature": sign(body), "Content-Type": "application/json"}
            started = time.monotonic()
            try:
                async with session.post(
                    f"http://127.0.0.1:{port}/in/demo",
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            results.append((status, time.monotonic() - started))
    return results


async def _attack(
    tmp_path: Path, receiver: Receiver, count: int, addresses: list[str], server: str = ""
) -> tuple[list[tuple[int, float]], int]:
    """Start the relay and the attacker (its own process), wait until every slow connection
    was tried at least once and then a second more, and send 50 real webhooks."""
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", receiver.url)
    config.write_text(config.read_text().replace("[server]", "[server]\n" + server))
    relay = RelayProcess(config)
    attacker = None
    try:
        relay.start()
        attacker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.slowloris",
            str(relay.port),
            str(count),
            *addresses,
            stdout=asyncio.subprocess.PIPE,
        )
        assert attacker.stdout is not None
        connects = 0
        for _ in range(30):  # one line a second
            line = await attacker.stdout.readline()
            connects = int(line.split()[1])
            if connects >= count:
                break
        await attacker.stdout.readline()  # held a second more: the relay is under attack
        results = await _real_webhooks(relay.port, 50)
        assert attacker.returncode is None, "the attacker stopped early"
        attacker.terminate()
        await attacker.wait()
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
        if attacker is not None and attacker.returncode is None:
            attacker.kill()
            await attacker.wait()
    return results, connects


@pytest.mark.parametrize("count", [1000, 5000])
async def test_slow_connections_from_one_address_do_not_lock_out_webhooks(
    tmp_path: Path, receiver: Receiver, count: int
) -> None:
    """The per-address limit: one address cannot hold more than 64 connections."""
    results, _ = await _attack(tmp_path, receiver, count, ["127.0.0.2"])
    statuses = [status for status, _ in results]
    assert statuses == [200] * 50, statuses
    assert max(seconds for _, seconds in results) < 1.0, results


async def test_slow_connections_from_many_addresses_are_evicted_for_real_ones(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Eviction at the cap: 1,000 slow connections from 20 addresses (50 each, under the
    per-address limit) against max_connections = 300."""
    addresses = [f"127.0.0.{10 + i}" for i in range(20)]
    results, connects = await _attack(
        tmp_path, receiver, 1000, addresses, server="max_connections = 300"
    )
    statuses = [status for status, _ in results]
    assert statuses == [200] * 50, statuses
    assert max(seconds for _, seconds in results) < 1.0, results
    assert connects >= 1000
