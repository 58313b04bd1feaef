"""What every source gets, whatever verifies it: the IP allowlist (with trusted proxies),
the bounded and redacted rejections table, and the provider's event time."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict

from relay.instants import parse_instant
from relay.network import client_address
from tests.helpers import BODY_JSON, SECRET, Receiver, post, query, running, settings_for, wait_for
from tests.verify.harness import Case, run_cases


def nets(*blocks: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(b) for b in blocks)


def test_client_address_believes_only_trusted_proxies() -> None:
    trusted = nets("10.0.0.0/8")
    # No trusted proxies: the peer, whatever the headers say.
    assert client_address("203.0.113.9", {"X-Forwarded-For": "1.2.3.4"}, ()) == "203.0.113.9"
    # A peer that is not trusted cannot name another client.
    assert client_address("203.0.113.9", {"X-Forwarded-For": "1.2.3.4"}, trusted) == "203.0.113.9"
    # Through a trusted proxy: the rightmost untrusted hop, so a client's own spoofed
    # X-Forwarded-For (leftmost) does not win.
    chain = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.0.0.2"}
    assert client_address("10.0.0.1", chain, trusted) == "198.51.100.7"
    assert client_address("10.0.0.1", {"Forwarded": 'for="[2001:db8::1]:4711"'}, trusted) == (
        "2001:db8::1"
    )
    assert client_address("10.0.0.1", {"Forwarded": "for=192.0.2.60;proto=https"}, trusted) == (
        "192.0.2.60"
    )
    # Garbage in the chain stops the walk at the last good hop.
    assert client_address("10.0.0.1", {"X-Forwarded-For": "nonsense"}, trusted) == "10.0.0.1"
    # IPv4-mapped IPv6 peers match IPv4 blocks.
    assert client_address("::ffff:10.0.0.1", {"X-Forwarded-For": "1.2.3.4"}, trusted) == "1.2.3.4"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000, 1700000000.0),
        (1700000000123, 1700000000.123),
        ("1700000000", 1700000000.0),
        ("2023-11-14T22:13:20Z", 1700000000.0),
        ("2023-11-14T22:13:20.5+00:00", 1700000000.5),
        ("2023-07-19T14:56:51.634234626Z", 1689778611.634234626),
        ("2023-11-14 23:13:20+0100", 1700000000.0),
        ("yesterday", None),
        (True, None),
        (-5, None),
        (float("nan"), None),
        ({"t": 1}, None),
        ("9" * 40, None),
    ],
)
def test_parse_instant(value: object, expected: float | None) -> None:
    result = parse_instant(value)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=1e-6)


async def test_allow_ips_and_trusted_proxies(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """The test client connects from 127.0.0.1, which is trusted as a proxy: the address in
    X-Forwarded-For decides. Without trust, X-Forwarded-For is ignored (spoofing fails)."""
    source = {"verify": "none", "allow_ips": ["198.51.100.0/24"]}
    cases = [
        Case("allowed", {"X-Forwarded-For": "198.51.100.7"}, b"{}", 200, forwarded=True),
        Case("outside", {"X-Forwarded-For": "203.0.113.1"}, b"{}", 403),
        Case("spoof-left", {"X-Forwarded-For": "198.51.100.7, 203.0.113.1"}, b"{}", 403),
        Case("direct", {}, b"{}", 403),  # the proxy itself is not an allowed client
    ]
    result = await run_cases(
        tmp_path, receiver, client, source, cases, server={"trusted_proxies": ["127.0.0.1"]}
    )
    assert query(result.db, "SELECT remote_addr FROM events") == [("198.51.100.7",)]
    rejected = query(result.db, "SELECT status, reason, remote_addr FROM rejections ORDER BY id")
    assert rejected == [
        (403, "client address not allowed", "203.0.113.1"),
        (403, "client address not allowed", "203.0.113.1"),
        (403, "client address not allowed", "127.0.0.1"),
    ]

    # The same source, no trusted proxies: a spoofed header from the peer changes nothing.
    (tmp_path / "untrusted").mkdir()
    spoofed = [Case("spoofed", {"X-Forwarded-For": "198.51.100.7"}, b"{}", 403)]
    receiver.received.clear()
    await run_cases(tmp_path / "untrusted", receiver, client, source, spoofed)


async def test_rejections_are_bounded_and_redacted(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, storage={"keep_rejections": 5})
    async with running(settings) as relay:
        for i in range(12):
            status, _, _ = await post(
                client, relay.port, BODY_JSON, key=f"k{i}", signature="sha256=" + "0" * 64
            )
            assert status == 401
        status, _, _ = await post(client, relay.port, BODY_JSON, key="good")
        assert status == 200

        def trimmed() -> bool:
            return query(db, "SELECT COUNT(*) FROM rejections") == [(5,)]

        await wait_for(trimmed)
    rows = query(db, "SELECT source, status, reason, headers FROM rejections ORDER BY id")
    assert len(rows) == 5
    for source, status, reason, headers in rows:
        assert (source, status, reason) == ("demo", 401, "signature does not match")
        pairs = CIMultiDict(json.loads(headers))
        assert pairs["X-Signature"] == "[redacted]"
        assert pairs["X-Request-Id"].startswith("k")  # non-secret headers are kept
        assert SECRET not in headers
        assert "0" * 64 not in headers
    # The newest were kept.
    assert [CIMultiDict(json.loads(h))["X-Request-Id"] for *_, h in rows] == [
        f"k{i}" for i in range(7, 12)
    ]
