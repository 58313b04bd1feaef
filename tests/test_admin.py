"""The admin API and /metrics, against a real relay: auth, separation from ingress, replay
of dead deliveries while ingest goes on, and every metric moving as it should."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for

TOKEN = "admin-test-token"
ADMIN = {"admin": {"listen": "127.0.0.1:0", "token": TOKEN}}


def admin_url(relay: Any, path: str) -> str:
    return f"http://{relay.admin_address}{path}"


async def call(
    client: aiohttp.ClientSession,
    relay: Any,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client.request(method, admin_url(relay, path), json=body, headers=headers) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def test_admin_needs_the_token_and_ingress_never_serves_it(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    settings = settings_for(tmp_path / "relay.db", receiver.url, **ADMIN)
    async with running(settings) as relay:
        for path in ("/api/events", "/metrics", "/api/stats", "/api/openapi.json"):
            assert (await call(client, relay, "GET", path, token=None))[0] == 401
            assert (await call(client, relay, "GET", path, token="wrong"))[0] == 401
            assert (await call(client, relay, "GET", path))[0] == 200
        status, _ = await call(client, relay, "POST", "/api/destinations/app/pause", token=None)
        assert status == 401
        # The public listener knows none of these paths.
        for path in ("/api/events", "/metrics", "/api/openapi.json", "/api/stats"):
            async with client.get(f"http://127.0.0.1:{relay.port}{path}") as r:
                assert r.status == 404
            async with client.post(f"http://127.0.0.1:{relay.port}{path}") as r:
                assert r.status == 404
        status, doc = await call(client, relay, "GET", "/api/openapi.json")
        assert doc["openapi"].startswith("3.")
        assert "/api/replay" in doc["paths"]


async def test_replay_of_a_thousand_dead_deliveries_while_ingest_goes_on(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    receiver.default = 422  # permanent: each delivery is dead after one attempt
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, destination={"max_concurrency": 50}, **ADMIN)
    dead_count = 1000
    async with running(settings) as relay:
        for i in range(dead_count):
            status, _, _ = await post(client, relay.port, BODY_JSON, key=f"dead-{i}")
            assert status == 200

        def all_dead() -> bool:
            rows = query(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'dead'")
            return rows == [(dead_count,)]

        await wait_for(all_dead, timeout=60)
        receiver.default = 200
        dry = await call(
            client,
            relay,
            "POST",
            "/api/replay",
            {"filter": {"destination": "app", "since": "1h"}, "dry_run": True},
        )
        status, answer = dry
        assert (status, answer["replayed"], answer["matched"], answer["dry_run"]) == (
            200,
            0,
            dead_count,
            True,
        )

        async def ingest() -> None:
            for i in range(200):
                status, _, _ = await post(client, relay.port, BODY_JSON, key=f"live-{i}")
                assert status == 200

        feeding = asyncio.create_task(ingest())
        live = "SELECT COUNT(*) FROM events WHERE idempotency_key LIKE 'live-%'"
        await wait_for(lambda: query(db, live)[0][0] > 0)  # ingest is under way
        status, answer = await call(
            client, relay, "POST", "/api/replay", {"filter": {"destination": "app", "since": "1h"}}
        )
        assert status == 200
        assert answer["replayed"] == dead_count
        await feeding
        # Replaying again by the same filter finds nothing: each dead delivery once.
        again = await call(client, relay, "POST", "/api/replay", {"filter": {"destination": "app"}})
        assert again[1]["replayed"] == 0
        expected = 2 * dead_count + 200

        await wait_for(lambda: len(receiver.received) >= expected, timeout=60)
        finished = "SELECT COUNT(*) FROM deliveries WHERE state != 'pending'"
        await wait_for(lambda: query(db, finished) == [(expected,)])
    per_key = Counter(r.headers["X-Request-ID"] for r in receiver.received)
    assert all(per_key[f"dead-{i}"] == 2 for i in range(dead_count))  # 422, then the replay
    assert all(per_key[f"live-{i}"] == 1 for i in range(200))
    assert len(receiver.received) == expected
    history = query(
        db,
        "SELECT COUNT(*), COUNT(replay_of) FROM deliveries WHERE state = 'dead' OR replay_of "
        "IS NOT NULL",
    )
    assert history == [(2 * dead_count, dead_count)]  # the dead ones stay, as history


def families(text: str) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """name → {(sample name, labels): value}, from the Prometheus text format."""
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(text):
        samples = out.setdefault(family.name, {})
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    return float(found[family].get((sample, tuple(sorted(labels.items()))), 0.0))


async def test_every_metric_moves(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    receiver.script = [503, 422]  # the first event retries once; the second dies
    settings = settings_for(
        tmp_path / "relay.db",
        receiver.url,
        destination={"circuit": {"failures": 100, "cooldown": 1.0}},
        **ADMIN,
    )
    async with running(settings) as relay:

        async def scrape() -> dict[str, Any]:
            status, text = await call(client, relay, "GET", "/metrics")
            assert status == 200
            return families(text)

        before = await scrape()
        assert (
            value(
                before, "relay_requests", "relay_requests_total", source="demo", outcome="accepted"
            )
            == 0
        )
        await relay.scheduler.pause("app")
        await post(client, relay.port, BODY_JSON, key="m1")
        await post(client, relay.port, BODY_JSON, key="m1")  # duplicate
        await post(client, relay.port, BODY_JSON, key="m2")
        await post(client, relay.port, BODY_JSON, key="m3", signature="sha256=00")  # rejected

        async def aged() -> bool:  # the oldest pending delivery is a second old, at least
            found = await scrape()
            oldest = "relay_oldest_pending_seconds"
            return value(found, oldest, oldest, destination="app") > 0

        await wait_for(aged, timeout=10)
        paused = await scrape()
        assert (
            value(paused, "relay_destination_paused", "relay_destination_paused", destination="app")
            == 1
        )
        assert (
            value(paused, "relay_pending_deliveries", "relay_pending_deliveries", destination="app")
            == 2
        )
        assert (
            value(
                paused,
                "relay_oldest_pending_seconds",
                "relay_oldest_pending_seconds",
                destination="app",
            )
            > 0
        )
        await relay.scheduler.resume("app")
        await wait_for(lambda: len(receiver.received) == 3)
        states = "SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state"
        db = tmp_path / "relay.db"
        await wait_for(lambda: query(db, states) == [("dead", 1), ("delivered", 1)])
        status, answer = await call(
            client, relay, "POST", "/api/replay", {"filter": {"destination": "app"}}
        )
        assert (status, answer["replayed"]) == (200, 1)
        await wait_for(lambda: len(receiver.received) == 4)
        await wait_for(lambda: query(db, states) == [("dead", 1), ("delivered", 2)])
        after = await scrape()
    checks = {
        ("relay_requests", "relay_requests_total", ("source", "demo"), ("outcome", "accepted")): 2,
        ("relay_requests", "relay_requests_total", ("source", "demo"), ("outcome", "duplicate")): 1,
        ("relay_requests", "relay_requests_total", ("source", "demo"), ("outcome", "rejected")): 1,
        (
            "relay_rejections",
            "relay_rejections_total",
            ("source", "demo"),
            ("reason", "signature does not match"),
        ): 1,
        ("relay_ack_seconds", "relay_ack_seconds_count", ("source", "demo")): 3,
        ("relay_attempts", "relay_attempts_total", ("destination", "app"), ("outcome", "retry")): 1,
        ("relay_attempts", "relay_attempts_total", ("destination", "app"), ("outcome", "dead")): 1,
        (
            "relay_attempts",
            "relay_attempts_total",
            ("destination", "app"),
            ("outcome", "delivered"),
        ): 2,
        ("relay_retries", "relay_retries_total", ("destination", "app")): 1,
        (
            "relay_deliveries",
            "relay_deliveries_total",
            ("destination", "app"),
            ("outcome", "delivered"),
        ): 2,
        (
            "relay_deliveries",
            "relay_deliveries_total",
            ("destination", "app"),
            ("outcome", "dead"),
        ): 1,
        ("relay_replays", "relay_replays_total", ("destination", "app")): 1,
        ("relay_attempt_seconds", "relay_attempt_seconds_count", ("destination", "app")): 4,
        (
            "relay_received_to_delivered_seconds",
            "relay_received_to_delivered_seconds_count",
            ("destination", "app"),
        ): 2,
        ("relay_pending_deliveries", "relay_pending_deliveries", ("destination", "app")): 0,
        ("relay_dead_deliveries", "relay_dead_deliveries", ("destination", "app")): 0,
        ("relay_destination_paused", "relay_destination_paused", ("destination", "app")): 0,
        ("relay_circuit_state", "relay_circuit_state", ("destination", "app")): 0,
    }
    for (family, sample, *labels), expected in checks.items():
        got = value(after, family, sample, **dict(labels))
        assert got == expected, (family, labels, got)
    assert value(after, "relay_database_bytes", "relay_database_bytes") > 0
    assert value(after, "relay_wal_bytes", "relay_wal_bytes") > 0
    assert value(after, "relay_storage_full", "relay_storage_full") == 0


async def test_circuit_gauge_and_storage_limit(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """The circuit-state gauge shows an open circuit; over storage.max_size, ingress answers
    507 (never 2xx for an event it did not take), the gauge says so, one alert is queued."""
    receiver.default = 503
    alerts = await Receiver().start()
    try:
        settings = settings_for(
            tmp_path / "relay.db",
            receiver.url,
            destinations=[
                {
                    "name": "app",
                    "url": receiver.url,
                    "circuit": {"failures": 2, "cooldown": 60},
                    "retry": {"base": 0.01, "cap": 0.02},
                },
                {"name": "alerts", "url": alerts.url},
            ],
            # A fresh database is about 130 KB; a few 200 KB events take it over 1 MB.
            storage={"max_size": 1_000_000, "alert": "alerts"},
            **ADMIN,
        )
        async with running(settings) as relay:
            deadline = time.monotonic() + 10
            status, accepted = 200, 0
            while status != 507 and time.monotonic() < deadline:
                body = json.dumps({"id": f"evt_{accepted}", "pad": "x" * 200_000}).encode()
                status, _, _ = await post(client, relay.port, body)
                accepted += status == 200
                await asyncio.sleep(0.1)
            assert status == 507
            assert accepted >= 4  # under the limit they were taken (and go to app, failing)
            await wait_for(lambda: len(alerts.received) == 1)
            assert json.loads(alerts.received[0].body)["type"] == "storage.full"
            await wait_for(lambda: relay.scheduler.lanes["app"].circuit.state == "open")  # type: ignore[union-attr]
            _, text = await call(client, relay, "GET", "/metrics")
            found = families(text)
        assert value(found, "relay_circuit_state", "relay_circuit_state", destination="app") == 2
        assert value(found, "relay_storage_full", "relay_storage_full") == 1
    finally:
        await alerts.stop()


async def _raw(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One raw HTTP request (headers as bytes, anything in them): (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        answer = await reader.read()
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


async def test_admin_input_is_checked_strictly_and_named_in_400s(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 28: each of these answered 500 (or did what the caller did not mean: "again":
    "no" replayed a second time, "dry_run": "false" was a dry run, a relative backup path
    wrote a copy into relay's working directory) before."""
    receiver.default = 422
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, **ADMIN)
    async with running(settings) as relay:
        for i in range(3):
            assert (await post(client, relay.port, BODY_JSON, key=f"k{i}"))[0] == 200
        await wait_for(
            lambda: query(db, "SELECT count(*) FROM deliveries WHERE state='dead'") == [(3,)]
        )
        deep = "[" * 10_000 + "]" * 10_000
        cases: list[tuple[str, str, Any, str]] = [
            ("POST", "/api/replay", {"delivery_id": 2**70}, "delivery_id"),
            ("POST", "/api/replay", {"delivery_id": "1"}, "delivery_id"),
            ("POST", "/api/replay", {"filter": {"source": ["a"]}}, "filter.source"),
            ("POST", "/api/replay", {"filter": {"error": {"a": 1}}}, "filter.error"),
            ("POST", "/api/replay", {"filter": {}, "destination": ["app"]}, "destination"),
            ("POST", "/api/replay", {"filter": {}, "again": "no"}, "again"),
            ("POST", "/api/replay", {"filter": {}, "dry_run": "false"}, "dry_run"),
            ("POST", "/api/replay", {"filter": {}, "state": "gone"}, "state"),
            ("POST", "/api/replay", {"filter": {}, "surprise": 1}, "surprise"),
            ("POST", "/api/replay", {"event_id": "e\x00"}, "event_id"),
            ("POST", "/api/replay", [1, 2], "the body"),
            ("POST", "/api/replay", deep, "the body"),
            ("POST", "/api/backup", {"path": 7}, "path"),
            ("POST", "/api/backup", {"path": "/" + "x" * 5000}, "path"),
            # Relative to relay's working directory (/ under systemd, a checkout in the fuzz
            # test, which left copies named "false" and "é" there): written nowhere.
            ("POST", "/api/backup", {"path": "copy.db"}, "path"),
            ("GET", "/api/dead?limit=99999999999", None, "limit"),
            ("GET", "/api/events?limit=-1", None, "limit"),
            ("GET", "/api/audit?limit=x", None, "limit"),
        ]
        for method, path, body, field in cases:
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            url = admin_url(relay, path)
            data = raw if method == "POST" else None
            async with client.request(method, url, data=data, headers=headers) as r:
                answer = await r.json()
                assert r.status == 400, (path, body if len(str(body)) < 100 else "…", answer)
                assert field in answer["error"], (field, answer)
        # Nothing above replayed anything.
        assert query(db, "SELECT count(*) FROM deliveries") == [(3,)]
        status, answer = await call(
            client, relay, "POST", "/api/backup", {"path": str(tmp_path / "no" / "copy.db")}
        )
        assert status == 409
        assert "no such folder" in answer["error"]
        port = int(relay.admin_address.rsplit(":", 1)[1])
        head = (
            b"POST /api/replay HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\n"
        )
        for name in (b"Idempotency-Key", b"X-Relay-Actor"):
            status, text = await _raw(port, head + name + b": caf\xe9\r\n", b'{"filter": {}}')
            assert status == 400, text
            assert name.decode() in json.loads(text)["error"]
        assert query(db, "SELECT count(*) FROM deliveries") == [(3,)]
        # And a strict boolean means what it says.
        status, answer = await call(
            client, relay, "POST", "/api/replay", {"filter": {}, "dry_run": False}
        )
        assert (status, answer["replayed"], answer["dry_run"]) == (200, 3, False)


def test_openapi_carries_the_models_the_api_parses() -> None:
    """relay/openapi.json's request bodies are the models' own schemas (written by
    `python -m relay.admin.inputs`), so the document cannot drift from what is enforced."""
    from importlib import resources

    from relay.admin import inputs

    doc = json.loads(resources.files("relay").joinpath("openapi.json").read_text())
    assert doc["components"]["schemas"] == inputs.schemas()
    for path, model in (("/api/replay", "ReplayRequest"), ("/api/backup", "BackupRequest")):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{model}"}
    limits = [
        p["schema"]
        for ops in doc["paths"].values()
        for op in ops.values()
        for p in op.get("parameters", [])
        if p["name"] == "limit"
    ]
    assert limits
    assert all(s["minimum"] == 1 and s["maximum"] == 1000 for s in limits), limits
