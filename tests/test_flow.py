"""End to end, in process: real relay, real SQLite file, real receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Receiver, post, query, running, settings_for, sign, wait_for

BODY = json.dumps({"id": "evt_test", "type": "invoice.paid", "amount": 4200}).encode()


async def test_delivered_once_byte_identical(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    body = b'{"type":  "invoice.paid", "note": "\xe2\x9c\x93 \\u2713"}\r\n'  # spacing kept
    async with running(settings_for(db, receiver.url)) as relay:
        status, headers, answer = await post(
            client,
            relay.port,
            body,
            content_type="application/json; charset=utf-8",
            extra={
                "X-Custom": "kept",
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "dropped",
                "X-Relay-Attempt": "forged",
            },
        )
        assert status == 200
        assert answer == {"id": headers["X-Relay-Event-Id"], "duplicate": False}
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("delivered",)])
    # Stopped (attempts in flight finished): one receipt, one recorded attempt.
    assert len(receiver.received) == 1
    assert query(db, "SELECT COUNT(*) FROM attempts") == [(1,)]
    got = receiver.received[0]
    assert got.body == body
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    assert got.headers["X-Relay-Event-Id"] == answer["id"]
    assert got.headers["X-Relay-Attempt"] == "1"
    assert got.headers["X-Relay-Source"] == "demo"
    assert got.headers["X-Custom"] == "kept"
    assert got.headers["X-Signature"] == sign(body)  # the receiver can verify the sender itself
    assert "X-Hop" not in got.headers  # named by Connection: hop-by-hop
    assert got.host == f"127.0.0.1:{receiver.port}"  # Host is the destination's
    rows = query(db, "SELECT state, attempts, last_status FROM deliveries")
    assert rows == [("delivered", 1, 200)]
    event = query(db, "SELECT source, event_type, content_type, body FROM events")
    assert event == [("demo", "invoice.paid", "application/json; charset=utf-8", body)]


async def test_retried_until_success(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    receiver.script = [503, 503]
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        status, _, _ = await post(client, relay.port, BODY)
        assert status == 200
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("delivered",)])
    assert [r.headers["X-Relay-Attempt"] for r in receiver.received] == ["1", "2", "3"]
    assert len(set(receiver.event_ids())) == 1
    attempts = query(db, "SELECT number, status, outcome FROM attempts ORDER BY number")
    assert attempts == [(1, 503, "retry"), (2, 503, "retry"), (3, 200, "delivered")]


async def test_retry_after_delays_next_attempt(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    receiver.script = [(429, {"Retry-After": "1"})]
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        await post(client, relay.port, BODY)
        await wait_for(lambda: len(receiver.received) == 2, timeout=5)
    gap = receiver.received[1].at - receiver.received[0].at
    assert gap >= 1.0, f"second attempt came {gap:.3f}s after the 429, not >= 1s"
    assert query(db, "SELECT state FROM deliveries") == [("delivered",)]


async def test_permanent_4xx_is_dead_after_one_attempt(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    receiver.script = [400]
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        await post(client, relay.port, BODY)
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("dead",)])
    assert len(receiver.received) == 1
    [(attempts, last_status, error)] = query(
        db, "SELECT attempts, last_status, last_error FROM deliveries"
    )
    assert (attempts, last_status) == (1, 400)
    assert "permanent" in error


async def test_max_attempts_exhausted_is_dead(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    receiver.default = 500
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, retry={"max_attempts": 3})
    async with running(settings) as relay:
        await post(client, relay.port, BODY)
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("dead",)])
    assert len(receiver.received) == 3
    outcomes = query(db, "SELECT outcome FROM attempts ORDER BY number")
    assert outcomes == [("retry",), ("retry",), ("dead",)]


async def test_connection_refused_is_retried_then_dead(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    silent = await Receiver().start()
    url = silent.url
    await silent.stop()  # nothing listens on that port any more
    db = tmp_path / "relay.db"
    async with running(settings_for(db, url, retry={"max_attempts": 2})) as relay:
        await post(client, relay.port, BODY)
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("dead",)])
    errors = query(db, "SELECT status, error FROM attempts")
    assert len(errors) == 2
    assert all(status is None and "Connect" in error for status, error in errors)


async def test_duplicates_store_one_event_and_one_delivery(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        sequential = [await post(client, relay.port, BODY, key="same-1") for _ in range(3)]
        concurrent = await asyncio.gather(
            *(post(client, relay.port, BODY, key="same-2") for _ in range(20))
        )
        await wait_for(
            lambda: query(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'") == [(2,)]
        )
    for answers in (sequential, concurrent):
        assert all(status == 200 for status, _, _ in answers)
        ids = {payload["id"] for _, _, payload in answers}
        assert len(ids) == 1, "every duplicate names the original event"
        assert sum(1 for _, _, p in answers if not p["duplicate"]) == 1
        assert all(h.get("X-Relay-Duplicate") == "true" for _, h, p in answers if p["duplicate"])
    assert query(db, "SELECT count(*) FROM events") == [(2,)]
    assert query(db, "SELECT count(*) FROM deliveries") == [(2,)]
    assert len(receiver.received) == 2


async def test_events_without_key_are_never_duplicates(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        answers = await asyncio.gather(*(post(client, relay.port, BODY) for _ in range(5)))
        await wait_for(lambda: len(receiver.received) == 5)
    assert len({p["id"] for _, _, p in answers}) == 5
    assert query(db, "SELECT count(*) FROM deliveries WHERE state = 'delivered'") == [(5,)]


async def test_bad_signature_is_401_and_stores_nothing(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        wrong = await post(client, relay.port, BODY, signature=sign(BODY, "another-secret"))
        tampered = await post(client, relay.port, BODY + b" ", signature=sign(BODY))
        missing = await post(client, relay.port, BODY, extra={"X-Signature": ""})
        await wait_for(lambda: query(db, "SELECT COUNT(*) FROM rejections") == [(3,)])
    assert [a[0] for a in (wrong, tampered, missing)] == [401, 401, 401]
    assert wrong[2] == {"error": "signature does not match"}
    assert query(db, "SELECT count(*) FROM events") == [(0,)]
    assert receiver.received == []


async def test_unknown_source_is_404(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        status, _, _ = await post(client, relay.port, BODY, source="nope")
        async with client.get(f"http://127.0.0.1:{relay.port}/in/demo") as wrong_method:
            assert wrong_method.status == 405
        async with client.post(f"http://127.0.0.1:{relay.port}/admin") as elsewhere:
            assert elsewhere.status == 404
    assert status == 404
    assert query(db, "SELECT count(*) FROM events") == [(0,)]


async def test_oversized_body_is_413_and_not_stored(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, server={"max_body_size": 1024})
    big = b"x" * 5000
    async with running(settings) as relay:
        declared = await post(client, relay.port, big)

        async def chunks():  # no Content-Length: the limit must hold while reading
            for _ in range(5):
                yield b"y" * 1000

        url = f"http://127.0.0.1:{relay.port}/in/demo"
        async with client.post(url, data=chunks(), headers={"X-Signature": "x"}) as response:
            chunked = response.status
        small = await post(client, relay.port, b"z" * 1000)
    assert declared[0] == 413
    assert chunked == 413
    assert small[0] == 200
    assert query(db, "SELECT count(*) FROM events") == [(1,)]


async def test_health_and_readiness(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        base = f"http://127.0.0.1:{relay.port}"
        async with client.get(base + "/healthz") as alive:
            assert alive.status == 200
        async with client.get(base + "/readyz") as ready:
            assert ready.status == 200
            assert (await ready.json())["status"] == "ready"


async def test_fan_out_one_route_two_destinations(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    failing = await Receiver(default=500).start()
    db = tmp_path / "relay.db"
    base = settings_for(db, receiver.url, retry={"max_attempts": 2})
    data = base.model_dump()
    data["sources"][0]["secret"] = "test-secret"
    data["destinations"].append({**data["destinations"][0], "name": "other", "url": failing.url})
    data["routes"] = [{"source": "demo", "destinations": ["app", "other"]}]
    settings = type(base)(**data)
    try:
        async with running(settings) as relay:
            await post(client, relay.port, BODY)
            await wait_for(
                lambda: (
                    sorted(query(db, "SELECT destination, state FROM deliveries"))
                    == [("app", "delivered"), ("other", "dead")]
                )
            )
    finally:
        await failing.stop()
    assert len(receiver.received) == 1
    assert len(failing.received) == 2


async def test_info_logs_retries_and_dead_letters_but_no_line_per_delivered_event(
    tmp_path: Path,
    receiver: Receiver,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At the default level an event that arrives and is delivered writes no line (that line
    cost more CPU than the rest of ingest); a retry is an info line, a dead letter a warning;
    debug has a line per event and per attempt."""
    receiver.script = [503, 200, 400]  # the first event: retried, then delivered; then dead
    db = tmp_path / "relay.db"
    for level, done in ((logging.INFO, 1), (logging.DEBUG, 2)):  # done: so far, each state
        caplog.clear()
        caplog.set_level(level, logger="relay")
        async with running(settings_for(db, receiver.url)) as relay:
            await post(client, relay.port, BODY, extra={"X-Request-Id": f"a-{level}"})
            await wait_for(
                lambda: (
                    query(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")
                    >= [(done,)]  # noqa: B023 (awaited within the iteration)
                )
            )
            await post(client, relay.port, BODY, extra={"X-Request-Id": f"b-{level}"})
            await wait_for(
                lambda: (
                    query(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'dead'") >= [(done,)]  # noqa: B023 (awaited within the iteration)
                )
            )
        lines = [
            (r.levelname, r.msg, getattr(r, "fields", {}).get("outcome"))
            for r in caplog.records
            if r.msg in ("event.received", "delivery.attempt")
        ]
        if level == logging.INFO:
            assert lines == [
                ("INFO", "delivery.attempt", "retry"),
                ("WARNING", "delivery.attempt", "dead"),
            ]
            receiver.script = [200, 400]
        else:
            assert lines == [
                ("DEBUG", "event.received", None),
                ("DEBUG", "delivery.attempt", "delivered"),
                ("DEBUG", "event.received", None),
                ("WARNING", "delivery.attempt", "dead"),
            ]


async def test_a_permanent_failure_says_its_status_once(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 29: the last error read "HTTP 400; HTTP 400 is permanent"; the docs show (and
    the alert carries) "HTTP 400; permanent"."""
    receiver.default = 400
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        assert (await post(client, relay.port, b'{"a": 1}', key="p1"))[0] == 200
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("dead",)])
    assert query(db, "SELECT last_error FROM deliveries") == [("HTTP 400; permanent",)]


async def test_an_overlong_key_or_header_is_refused_and_names_itself(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 29: a 15,000-byte signed X-Request-Id was stored and forwarded, a default
    aiohttp receiver refused it (8,190-byte line limit) and the event died at once. Now
    ingest bounds keys (512 bytes) and each header (8,000), naming what was too long."""
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        status, _, answer = await post(client, relay.port, b'{"a": 1}', key="k" * 15_000)
        assert status == 431
        assert "X-Request-Id" in answer["error"]
        status, _, answer = await post(client, relay.port, b'{"a": 1}', key="k" * 600)
        assert status == 400
        assert "idempotency key" in answer["error"]
        status, _, answer = await post(
            client, relay.port, b'{"a": 1}', key="ok", extra={"X-Trace": "t" * 9000}
        )
        assert status == 431
        assert "X-Trace" in answer["error"]
        assert (await post(client, relay.port, b'{"a": 1}', key="k" * 512))[0] == 200
        await wait_for(lambda: len(receiver.received) == 1)
    assert query(db, "SELECT count(*) FROM events") == [(1,)]
