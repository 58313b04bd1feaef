"""Slow and idle connections cannot lock real webhooks out (issues 14 and 28).

Before (issue 14): 1,000 connections sending their headers a byte at a time filled
max_connections, and 12 of 50 real webhooks got a 2xx. Before (issue 28): over HTTPS,
1,000 connections that never sent a ClientHello let 2 of 50 real webhooks through, since a
connection in its handshake skipped the per-address cap and the eviction. The relay runs as
its own process; the attacker (its own process) and the real sender (a task of the test) use
different loopback addresses. Over TLS, relay's memory must come back after the attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.certs import make_ca, make_leaf
from tests.helpers import Receiver, sign, wait_for
from tests.process import RelayProcess, write_config


async def _real_webhooks(
    port: int, count: int, tls: ssl.SSLContext | None
) -> list[tuple[int, float]]:
    """``count`` signed webhooks from 127.0.0.1, each on a new connection: (status, seconds)."""
    results = []
    scheme = "https" if tls is not None else "http"
    connector = aiohttp.TCPConnector(force_close=True, local_addr=("127.0.0.1", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(count):
            body = b'{"type": "real", "n": %d}' % i
            headers = {"X-Signature": sign(body), "Content-Type": "application/json"}
            started = time.monotonic()
            try:
                async with session.post(
                    f"{scheme}://127.0.0.1:{port}/in/demo",
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=5),
                    ssl=tls if tls is not None else True,
                ) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            results.append((status, time.monotonic() - started))
    return results


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _tls(tmp_path: Path) -> tuple[str, ssl.SSLContext]:
    """The [server.tls] lines of a certificate for 127.0.0.1, and a client that trusts it."""
    ca = make_ca(tmp_path, "slowloris CA")
    cert, key = make_leaf(tmp_path, ["127.0.0.1"], ca, "public")
    return (
        f'[server.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n',
        ssl.create_default_context(cafile=str(ca[0])),
    )


async def _attack(
    tmp_path: Path,
    receiver: Receiver,
    count: int,
    addresses: list[str],
    server: str = "",
    *,
    https: bool = False,
) -> tuple[list[tuple[int, float]], int, tuple[int, int]]:
    """Start the relay and the attacker (its own process), wait until every slow connection
    was tried at least once and then a second more, and send 50 real webhooks. Over HTTPS
    the attacker's connections never send a byte (no ClientHello). Also returns relay's RSS
    (kB) after a warm-up, and the lowest seen within 10 s after the attack ended."""
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", receiver.url)
    tls, context = _tls(tmp_path) if https else ("", None)
    text = config.read_text().replace("[server]", "[server]\n" + server)
    config.write_text(text.replace("[storage]", tls + "[storage]"))
    relay = RelayProcess(config)
    attacker = None
    try:
        relay.start(timeout=20)
        assert relay.proc is not None
        warm = await _real_webhooks(relay.port, 50, context)
        assert [status for status, _ in warm] == [200] * 50, warm
        before = _rss_kb(relay.proc.pid)
        attacker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.slowloris",
            *(["--silent"] if https else []),
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
        results = await _real_webhooks(relay.port, 50, context)
        assert attacker.returncode is None, "the attacker stopped early"
        attacker.terminate()
        await attacker.wait()
        pid = relay.proc.pid
        lowest = [_rss_kb(pid)]

        def settled() -> bool:
            lowest.append(min(lowest[-1], _rss_kb(pid)))
            return lowest[-1] <= before * 1.1

        with contextlib.suppress(AssertionError):  # the assertion below says what it was
            await wait_for(settled, timeout=10, step=0.2)
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
        if attacker is not None and attacker.returncode is None:
            attacker.kill()
            await attacker.wait()
    return results, connects, (before, lowest[-1])


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("count", [1000, 5000])
async def test_slow_connections_from_one_address_do_not_lock_out_webhooks(
    tmp_path: Path, receiver: Receiver, count: int, https: bool
) -> None:
    """The per-address limit: one address cannot hold more than 64 connections, counted
    from accept (over TLS, through the handshake)."""
    results, _, (before, after) = await _attack(
        tmp_path, receiver, count, ["127.0.0.2"], https=https
    )
    statuses = [status for status, _ in results]
    assert statuses == [200] * 50, statuses
    assert max(seconds for _, seconds in results) < 1.0, results
    assert after <= before * 1.1, f"RSS {before} kB before the attack, {after} kB after"


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
async def test_slow_connections_from_many_addresses_are_evicted_for_real_ones(
    tmp_path: Path, receiver: Receiver, https: bool
) -> None:
    """Eviction at the cap: 1,000 slow connections from 20 addresses (50 each, under the
    per-address limit) against max_connections = 300; over TLS, a connection still in its
    handshake is evicted like one that has not finished its request head."""
    addresses = [f"127.0.0.{10 + i}" for i in range(20)]
    results, connects, (before, after) = await _attack(
        tmp_path, receiver, 1000, addresses, server="max_connections = 300", https=https
    )
    statuses = [status for status, _ in results]
    assert statuses == [200] * 50, statuses
    assert max(seconds for _, seconds in results) < 1.0, results
    assert connects >= 1000
    assert after <= before * 1.1, f"RSS {before} kB before the attack, {after} kB after"
