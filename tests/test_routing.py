"""Routing and delivery policy, end to end: a real relay, real receivers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook

from tests.helpers import Receiver, SteppedClock, post, query, running, settings_for, wait_for

SIGNING = "whsec_" + base64.b64encode(b"relay-outgoing-signing-secret!!!").decode()


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    started = [await Receiver().start() for _ in range(3)]
    yield started
    for rx in started:
        await rx.stop()


def dest(name: str, rx: Receiver, **extra: Any) -> dict[str, Any]:
    retry = {"max_attempts": 50, "base": 0.05, "cap": 0.2, **extra.pop("retry", {})}
    return {"name": name, "url": rx.url, "timeout": 2.0, "retry": retry, **extra}


def event(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


async def test_fan_out_with_filters(
    tmp_path: Path, receivers: list[Receiver], client: aiohttp.ClientSession
) -> None:
    """One source, three destinations, three filters: each gets exactly its events, and an
    event no route wants is stored, not lost."""
    billing, eu, audit = receivers
    routes = [
        # billing: invoice.* except invoice.test
        {
            "source": "demo",
            "destinations": ["billing"],
            "types": ["invoice.*"],
            "exclude_types": ["*.test"],
        },
        # eu: a JSON one-of, and a header regex, both
        {
            "source": "demo",
            "destinations": ["eu"],
            "when": [
                {"pointer": "/region", "one_of": ["de", "fr"]},
                {"header": "X-Shop", "regex": "^shop-[0-9]+$"},
            ],
        },
        # audit: big amounts, or anything flagged (a JSON true, not the string "true")
        {
            "source": "demo",
            "destinations": ["audit"],
            "match": "any",
            "when": [
                {"pointer": "/flagged", "equals": True},
                {"pointer": "/amount", "one_of": [1000, 5000]},
            ],
        },
    ]
    settings = settings_for(
        tmp_path / "relay.db",
        billing.url,
        destinations=[dest("billing", billing), dest("eu", eu), dest("audit", audit)],
        routes=routes,
    )
    cases = [
        ("e1", event("invoice.paid", region="us", amount=10), {}, {"billing"}),
        ("e2", event("invoice.test", region="de"), {"X-Shop": "shop-1"}, {"eu"}),
        (
            "e3",
            event("customer.created", region="fr", flagged=True),
            {"X-Shop": "shop-2"},
            {"eu", "audit"},
        ),
        ("e4", event("customer.created", region="de"), {"X-Shop": "other"}, set()),
        ("e5", event("invoice.paid", amount=1000), {}, {"billing", "audit"}),
        ("e6", event("customer.deleted", flagged="true", amount=1000.0), {}, {"audit"}),
        ("e7", b"not json", {}, set()),
    ]
    async with running(settings) as relay:
        for key, body, headers, _ in cases:
            status, _, _ = await post(client, relay.port, body, key=key, extra=headers)
            assert status == 200
        expected = sum(len(wanted) for *_, wanted in cases)
        await wait_for(lambda: sum(len(rx.received) for rx in receivers) >= expected)
    got = {
        name: sorted(r.headers["X-Request-ID"] for r in rx.received)
        for name, rx in (("billing", billing), ("eu", eu), ("audit", audit))
    }
    for name in got:
        assert got[name] == sorted(k for k, _, _, wanted in cases if name in wanted), name
    # Unrouted events are stored, with no delivery: an operator can find them.
    unrouted = query(
        tmp_path / "relay.db",
        "SELECT idempotency_key FROM events e WHERE NOT EXISTS "
        "(SELECT 1 FROM deliveries d WHERE d.event_id = e.id) ORDER BY idempotency_key",
    )
    assert unrouted == [("e4",), ("e7",)]


async def test_signed_deliveries_verify_with_standard_webhooks(
    tmp_path: Path,
    receivers: list[Receiver],
    client: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The receiving side verifies with the standardwebhooks library; header transforms and
    the switch that strips the sender's headers apply."""
    signed, stripped, _ = receivers
    signed.script = [503]  # the retry is signed again, with the same webhook-id
    destinations = [
        dest(
            "signed",
            signed,
            signing_secret=SIGNING,
            headers={
                "set": {"X-Env": "prod"},
                "add": {"X-Team": "env:RELAY_TEST_TEAM"},
                "remove": ["X-Drop-Me"],
            },
        ),
        dest("stripped", stripped, forward_headers=False),
    ]
    monkeypatch.setenv("RELAY_TEST_TEAM", "payments")
    settings = settings_for(
        tmp_path / "relay.db",
        signed.url,
        destinations=destinations,
        routes=[{"source": "demo", "destinations": ["signed", "stripped"]}],
    )
    body = event("invoice.paid", amount=5)
    extra = {"X-Env": "dev", "X-Drop-Me": "1", "webhook-id": "forged", "User-Agent": "sender"}
    async with running(settings) as relay:
        status, headers, _ = await post(client, relay.port, body, key="k1", extra=extra)
        assert status == 200
        await wait_for(lambda: len(signed.received) == 2 and len(stripped.received) == 1)
    event_id = headers["X-Relay-Event-Id"]
    verifier = Webhook(SIGNING)
    for attempt in signed.received:
        assert verifier.verify(attempt.body, attempt.headers) == json.loads(body)
        assert attempt.headers["webhook-id"] == event_id  # stable across attempts
        assert attempt.headers["X-Env"] == "prod"
        assert attempt.headers["X-Team"] == "payments"
        assert "X-Drop-Me" not in attempt.headers
        assert attempt.headers["X-Signature"].startswith("sha256=")  # the sender's, passed on
    bad = dict(signed.received[0].headers)
    bad["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(Exception, match="signature"):
        verifier.verify(signed.received[0].body, bad)
    plain = stripped.received[0].headers
    assert "X-Signature" not in plain
    assert "X-Request-ID" not in plain
    assert plain["Content-Type"] == "application/json"
    assert plain["X-Relay-Event-Id"] == event_id
    assert stripped.received[0].body == body


async def test_rate_limit_and_concurrency_over_a_backlog(
    tmp_path: Path, receivers: list[Receiver], client: aiohttp.ClientSession
) -> None:
    """A queued backlog never goes out faster than the rate limit (no second holds more than
    rate + burst deliveries), never more than 3 at once, and all of it arrives."""
    rx = receivers[0]
    rate, burst = 50, 1
    settings = settings_for(
        tmp_path / "relay.db",
        rx.url,
        destination={
            "rate_limit": {"rate": rate, "burst": burst},
            "max_concurrency": 3,
            "paused": True,
        },
    )
    total = 300
    async with running(settings) as relay:
        for i in range(total):
            status, _, _ = await post(client, relay.port, event("x.y", n=i), key=f"k{i}")
            assert status == 200
        assert rx.received == []  # paused: the backlog builds
        await relay.scheduler.resume("app")
        await wait_for(lambda: len(rx.received) == total, timeout=60.0)
    times = sorted(r.at for r in rx.received)
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= rate + burst, busiest
    assert times[-1] - times[0] >= (total - burst) / rate * 0.99  # never faster on the whole
    assert rx.max_inflight <= 3


async def test_concurrency_limit_with_a_slow_receiver(
    tmp_path: Path, receivers: list[Receiver], client: aiohttp.ClientSession
) -> None:
    rx = receivers[0]
    rx.default = "slow"  # 0.3 s per answer, so requests pile up to the limit
    settings = settings_for(tmp_path / "relay.db", rx.url, destination={"max_concurrency": 4})
    async with running(settings) as relay:
        for i in range(24):
            await post(client, relay.port, event("x.y", n=i), key=f"k{i}")
        await wait_for(lambda: len(rx.received) == 24, timeout=20.0)
    assert rx.max_inflight == 4  # reached, never exceeded


async def test_circuit_breaker_outage_pause_and_alert(
    tmp_path: Path, receivers: list[Receiver], client: aiohttp.ClientSession
) -> None:
    """A receiver down for 30 s: a handful of attempts, not one per waiting delivery; one
    alert; after it returns and the destination is resumed, every event is delivered.
    The lanes' clock is moved forward (no real 30 s): each cooldown, then the rest of the
    outage, passes at once, and the test waits on what the lane did, not on time."""
    rx, alerts, _ = receivers
    rx.default = 503
    cooldown = 4.0
    circuit = {"failures": 3, "cooldown": cooldown, "pause_after": 10.0, "alert": "alerts"}
    settings = settings_for(
        tmp_path / "relay.db",
        rx.url,
        destinations=[
            dest("app", rx, circuit=circuit, max_concurrency=1),
            dest("alerts", alerts),
        ],
    )
    waiting = 40
    clock = SteppedClock()
    async with running(settings, clock) as relay:
        started = clock.time()
        for i in range(waiting):
            await post(client, relay.port, event("x.y", n=i), key=f"k{i}")
        lane = relay.scheduler.lane("app")
        assert lane.circuit is not None
        await wait_for(lambda: lane.circuit is not None and lane.circuit.state == "open")
        for _ in range(10):  # a probe per cooldown, each failing, until the pause
            if lane.paused is not None:
                break
            sent = len(rx.received)
            clock.advance(cooldown)
            lane.notify()
            await wait_for(lambda sent=sent: len(rx.received) > sent)  # the probe went out
            await wait_for(lambda: lane.in_flight == 0)  # and its outcome is known
        await wait_for(lambda: len(alerts.received) == 1)
        assert lane.paused is not None
        # The rest of the 30 s outage: paused, nothing is sent.
        outage_attempts = len(rx.received)
        clock.advance(max(0.0, started + 30.0 - clock.time()))
        looks = lane.looks
        lane.notify()
        await wait_for(lambda: lane.looks > looks)  # it looked again, and went back to sleep
        assert (len(rx.received), lane.in_flight) == (outage_attempts, 0)
        rx.default = 200
        await relay.scheduler.resume("app")
        await wait_for(
            lambda: (
                len({r.headers["X-Request-ID"] for r in rx.received if r.answer == 200}) == waiting
            )
        )
    assert outage_attempts <= 6, outage_attempts  # 3 to open it, then a probe per cooldown
    assert len(alerts.received) == 1
    alert = json.loads(alerts.received[0].body)
    assert alert["destination"] == "app"
    assert alert["waiting"] == waiting
    assert alert["type"] == "destination.paused"
    assert "app" in alert["text"]
    # No delivery spent its attempts while the circuit was open.
    attempts = query(
        tmp_path / "relay.db", "SELECT MAX(attempts) FROM deliveries WHERE destination = 'app'"
    )
    assert attempts[0][0] <= 3


async def test_ordered_delivery_per_key_with_a_flaky_receiver(
    tmp_path: Path, receivers: list[Receiver], client: aiohttp.ClientSession
) -> None:
    rx = receivers[0]
    rng = random.Random(7)
    # 30% fail; the rest answer after 0.3 s, so keys overlap in time.
    rx.default = lambda: 500 if rng.random() < 0.3 else "slow"
    settings = settings_for(
        tmp_path / "relay.db",
        rx.url,
        destination={
            "ordering": "key",
            "ordering_key": "json:/customer",
            "max_concurrency": 8,
            "retry": {"max_attempts": 100, "base": 0.01, "cap": 0.05},
        },
    )
    customers, per_customer = ("c1", "c2", "c3"), 15
    async with running(settings) as relay:
        for n in range(per_customer):
            for c in customers:
                await post(client, relay.port, event("x.y", customer=c, n=n), key=f"{c}-{n}")

        def done() -> bool:
            return (
                sum(1 for r in rx.received if r.answer == "slow") == len(customers) * per_customer
            )

        await wait_for(done, timeout=30.0)
    for c in customers:
        seen = [json.loads(r.body)["n"] for r in rx.received if json.loads(r.body)["customer"] == c]
        # Every attempt (failed ones too) of event n comes after event n-1 was delivered.
        assert seen == sorted(seen), (c, seen)
        delivered = [
            json.loads(r.body)["n"]
            for r in rx.received
            if r.answer == "slow" and json.loads(r.body)["customer"] == c
        ]
        assert delivered == list(range(per_customer))
    # Different keys went in parallel: more than one request was in flight at some point.
    assert rx.max_inflight > 1


async def test_http_proxy_per_destination(
    tmp_path: Path, receivers: list[Receiver], client: aiohttp.ClientSession
) -> None:
    """A destination with a proxy connects to the proxy, which is asked for the target URL;
    the target's name is never resolved by relay (it does not exist here)."""
    proxy = receivers[0]
    target = "http://internal-service.invalid:9/hook"
    settings = settings_for(
        tmp_path / "relay.db",
        target,
        destination={"url": target, "proxy": f"http://127.0.0.1:{proxy.port}"},
    )
    async with running(settings) as relay:
        status, _, _ = await post(client, relay.port, event("x.y"), key="k1")
        assert status == 200
        await wait_for(lambda: len(proxy.received) == 1)
    assert proxy.received[0].headers["Host"] == "internal-service.invalid:9"
    assert json.loads(proxy.received[0].body) == {"type": "x.y"}
