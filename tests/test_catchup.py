"""Catch-up (issue 30): what a provider sent while relay was down is fetched back from its
API and delivered once. Real relays (in process, and as processes for SIGKILL and the CLI)
on real SQLite files, a real receiver, and the providers' APIs served by the fakes in
``tests/catchup/`` (documented endpoints and shapes, pagination, 401, 429 with
Retry-After), which send the redeliveries they are asked for as signed webhooks."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.config import load_config
from tests.catchup.fakes import (
    SVIX_SECRET,
    FakeGitHub,
    FakePaddle,
    FakeStripe,
    FakeSvix,
    paddle_signature,
    send,
    stripe_event,
    stripe_signature,
    svix_headers,
)
from tests.helpers import Receiver, query, running, wait_for
from tests.process import RelayProcess, run_cli

TOKEN = "catch-up-admin-token"
STRIPE_SECRET = "whsec_catchup"
GITHUB_SECRET = "gh-secret"
PADDLE_SECRET = "pdl_ntfset_secret"


def write_config(
    tmp: Path,
    source: str,
    receiver: Receiver,
    admin: str = "127.0.0.1:0",
    port: int = 0,
    extra: str = "",
) -> Path:
    """A config with one source (TOML text with its [sources.catch_up]) routed to the
    receiver; the admin API on ``admin``."""
    name = source.split('name = "', 1)[1].split('"', 1)[0]
    path = tmp / "relay.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
shutdown_grace = "1s"
[storage]
path = "{tmp / "relay.db"}"
[admin]
listen = "{admin}"
token = "{TOKEN}"
{source}
[[destinations]]
name = "app"
url = "{receiver.url}"
timeout = "2s"
[destinations.retry]
base = "50ms"
cap = "200ms"
[[routes]]
source = "{name}"
destinations = ["app"]
{extra}
"""
    )
    return path


async def catch_up(relay: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://{relay.admin_address}/api/catch-up",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        return response.status, await response.json()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def origins(receiver: Receiver) -> list[str | None]:
    return [r.headers.get("X-Relay-Origin") for r in receiver.received]


# -- Stripe: pulled ------------------------------------------------------------------------


def stripe_source(fake: FakeStripe) -> str:
    return f"""
[[sources]]
name = "stripe"
verify = "stripe"
secret = "{STRIPE_SECRET}"
[sources.catch_up]
api_key = "{fake.key}"
base_url = "{fake.url}"
"""


async def test_stripe_events_sent_while_relay_was_down_are_fetched_and_delivered_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    fake = await FakeStripe().start()
    try:
        config = write_config(tmp_path, stripe_source(fake), receiver)
        async with running(load_config(config)):
            pass  # relay ran, and beat: it knows when it stopped
        # Down: Stripe "sends" 120 events (their webhooks find nobody), and the first list
        # request will be rate limited.
        now = int(time.time())
        fake.events = [stripe_event(n, now) for n in range(120)]
        fake.throttle = 1
        async with running(load_config(config)) as relay:
            await wait_for(lambda: len(receiver.received) >= 120, timeout=60)
            sent = [json.loads(r.body)["id"] for r in receiver.received]
            assert sorted(sent) == sorted(e["id"] for e in fake.events)  # each, once
            assert set(origins(receiver)) == {"catch-up"}
            assert fake.pages == 2  # 100 + 20, and the 429 before them was waited out
            # Stripe retries 20 of them as real signed webhooks: duplicates, nothing new.
            async with aiohttp.ClientSession() as session:
                for event in fake.events[:20]:
                    body = json.dumps(event).encode()
                    headers = {
                        "Content-Type": "application/json",
                        "Stripe-Signature": stripe_signature(body, STRIPE_SECRET),
                    }
                    async with session.post(
                        f"http://127.0.0.1:{relay.port}/in/stripe", data=body, headers=headers
                    ) as response:
                        assert response.status == 200
                        assert (await response.json())["duplicate"] is True
            # The same window again, by hand: everything is known, nothing is stored.
            status, report = await catch_up(relay, {"source": "stripe", "since": "10m"})
            assert status == 200, report
            assert (report["fetched"], report["new"], report["known"]) == (120, 0, 120)
        rows = query(
            tmp_path / "relay.db",
            "SELECT COUNT(*), COUNT(DISTINCT idempotency_key), MIN(origin), MAX(origin)"
            " FROM events WHERE source = 'stripe'",
        )
        assert rows == [(120, 120, "catch-up", "catch-up")]
        assert len(receiver.received) == 120
        runs = query(
            tmp_path / "relay.db",
            "SELECT reason, state, fetched, new, known FROM catch_ups ORDER BY id",
        )
        assert runs == [("downtime", "done", 120, 120, 0), ("manual", "done", 120, 0, 120)]
        audit = query(tmp_path / "relay.db", "SELECT action, target FROM audit ORDER BY id")
        assert audit == [("catch-up", "stripe"), ("catch-up", "stripe")]
    finally:
        await fake.stop()


async def test_a_refused_key_is_a_failed_run_that_says_the_providers_answer(
    tmp_path: Path, receiver: Receiver
) -> None:
    fake = await FakeStripe(key="sk_test_right").start()
    try:
        source = stripe_source(fake).replace(fake.key, "sk_test_wrong")
        admin = f"unix:{tmp_path / 'admin.sock'}"
        config = write_config(tmp_path, source, receiver, admin)

        async def cli(*args: str) -> Any:
            # In a thread: the fake provider runs on this test's event loop.
            return await asyncio.to_thread(run_cli, "catch-up", "--config", str(config), *args)

        async with running(load_config(config)):
            failed = await cli("--source", "stripe", "--since", "1h")
            assert failed.returncode == 1
            assert "stripe: HTTP 401: Invalid API Key provided" in failed.stderr
            unknown = await cli("--source", "nope", "--since", "1h")
            assert unknown.returncode == 4  # nothing found
            assert "source nope has no [sources.catch_up]" in unknown.stderr
            wrong = await cli("--source", "stripe", "--since", "tomorrow")
            assert wrong.returncode == 2  # usage, said before relay is asked
        runs = query(tmp_path / "relay.db", "SELECT reason, state, error FROM catch_ups")
        assert runs == [("manual", "failed", "stripe: HTTP 401: Invalid API Key provided")]
        audit = query(tmp_path / "relay.db", "SELECT action, actor, origin FROM audit")
        assert len(audit) == 1
        assert audit[0][:2] == ("catch-up", "admin")  # who asked: the person of the token
        assert "(cli:" in audit[0][2]  # and who ran the command
    finally:
        await fake.stop()


async def test_an_automatic_run_that_fails_alerts_and_stays_open(
    tmp_path: Path, receiver: Receiver
) -> None:
    fake = await FakeStripe(key="sk_test_right").start()
    try:
        source = stripe_source(fake).replace(fake.key, "sk_test_wrong")
        alerts = '[alerts]\ndestination = "app"'
        config = write_config(tmp_path, source, receiver, extra=alerts)
        async with running(load_config(config)):
            pass
        async with running(load_config(config)):
            await wait_for(lambda: len(receiver.received) >= 1, timeout=30)
        alert = json.loads(receiver.received[0].body)
        assert alert["kind"] == "catch_up"
        assert alert["summary"] == (
            "catch-up of stripe failed: stripe: HTTP 401: Invalid API Key provided"
        )
        # Still open: tried again at the next interval (or start), after the key is fixed.
        runs = query(tmp_path / "relay.db", "SELECT reason, state, tries FROM catch_ups")
        assert runs == [("downtime", "open", 1)]
    finally:
        await fake.stop()


# -- GitHub: pushed, through the CLI ---------------------------------------------------------


def github_source(fake: FakeGitHub) -> str:
    return f"""
[[sources]]
name = "github"
verify = "github"
secret = "{GITHUB_SECRET}"
[sources.catch_up]
api_key = "{fake.key}"
base_url = "{fake.url}"
hook = "{fake.hook}"
"""


async def test_github_deliveries_that_failed_while_relay_was_down_are_redelivered_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    fake = await FakeGitHub(secret=GITHUB_SECRET, max_page=10).start()
    process = None
    try:
        admin = f"unix:{tmp_path / 'admin.sock'}"
        port = free_port()  # the same across restarts, as a provider knows it
        config = write_config(tmp_path, github_source(fake), receiver, admin, port)
        fake.relay_url = f"http://127.0.0.1:{port}/in/github"
        process = RelayProcess(config).start()
        # Before the outage: 5 deliveries that reached relay (it has their events).
        for n in range(5):
            body = json.dumps({"action": "opened", "number": n}).encode()
            guid = f"ok-{n:04d}-0000-0000-0000-000000000000"
            mac = __import__("hmac").new(GITHUB_SECRET.encode(), body, "sha256").hexdigest()
            headers = {
                "X-GitHub-Delivery": guid,
                "X-GitHub-Event": "issues",
                "X-Hub-Signature-256": f"sha256={mac}",
                "Content-Type": "application/json",
            }
            assert await send(fake.relay_url, body, headers) == 200
            fake.log(guid, 200, time.time(), body, "issues")
        await wait_for(lambda: len(receiver.received) >= 5, timeout=30)
        assert process.terminate() == 0
        # Down: 30 deliveries fail (502 from a proxy, or no connection at all).
        for n in range(30):
            body = json.dumps({"action": "opened", "number": 100 + n}).encode()
            guid = f"lost-{n:04d}-0000-0000-000000000000"
            fake.log(guid, 502 if n % 2 else 0, time.time(), body, "issues")
        fake.throttle = 1  # GitHub's secondary rate limit on the first call
        process = RelayProcess(config).start()
        await wait_for(lambda: len(receiver.received) >= 35, timeout=60)
        assert len(fake.redeliveries) == 30  # exactly the lost ones
        lost = {
            d["id"]
            for d in fake.deliveries
            if d["guid"].startswith("lost-") and not d["redelivery"]
        }
        assert set(fake.redeliveries) == lost
        # A second catch-up over the same window asks for nothing.
        # (In a thread: the fake provider runs on this test's event loop.)
        args = ("catch-up", "--config", str(config), "--source", "github", "--since", "10m")
        done = await asyncio.to_thread(run_cli, *args)
        assert done.returncode == 0, done.stderr
        assert "redelivery requested for 0" in done.stdout, done.stdout
        assert len(fake.redeliveries) == 30
        process.terminate()
        guids = query(
            tmp_path / "relay.db",
            "SELECT idempotency_key, COUNT(*) FROM events GROUP BY idempotency_key",
        )
        assert len(guids) == 35
        assert {count for _, count in guids} == {1}
        delivered = [r.headers["X-GitHub-Delivery"] for r in receiver.received]
        assert sorted(delivered) == sorted(g for g, _ in guids)  # each once
        assert set(origins(receiver)) == {None}  # redeliveries are ordinary webhooks
    finally:
        if process is not None:
            process.ensure_stopped()
        await fake.stop()


# -- Paddle and Svix: pushed -----------------------------------------------------------------


async def test_paddle_notifications_that_failed_are_replayed_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    fake = await FakePaddle(secret=PADDLE_SECRET).start()
    try:
        source = f"""
[[sources]]
name = "paddle"
verify = "paddle"
secret = "{PADDLE_SECRET}"
[sources.catch_up]
api_key = "{fake.key}"
base_url = "{fake.url}"
notification_setting_id = "ntfset_01relay"
"""
        port = free_port()
        config = write_config(tmp_path, source, receiver, port=port)
        fake.relay_url = f"http://127.0.0.1:{port}/in/paddle"
        async with running(load_config(config)):
            # Three notifications that reached relay, though Paddle lists them failed
            # (relay answered after Paddle's timeout): relay has their events.
            for n in range(3):
                note = fake.add(f"evt_known{n:04d}", "failed", time.time())
                body = json.dumps(note["payload"]).encode()
                headers = {"Paddle-Signature": paddle_signature(body, PADDLE_SECRET)}
                assert await send(fake.relay_url, body, headers) == 200
        now = time.time()
        for n in range(8):
            fake.add(f"evt_lost{n:04d}", "failed", now)
        for n in range(2):
            fake.add(f"evt_retry{n:04d}", "needs_retry", now)
        async with running(load_config(config)) as relay:
            await wait_for(lambda: len(receiver.received) >= 11, timeout=60)
            assert len(fake.replays) == 8
            status, report = await catch_up(relay, {"source": "paddle", "since": "10m"})
            assert status == 200, report
            assert report["requested"] == 0
            assert report["notes"] == [
                "Paddle is still retrying 2; a later run replays any it gives up on"
            ]
        ids = query(tmp_path / "relay.db", "SELECT idempotency_key FROM events")
        assert sorted(i for (i,) in ids) == sorted(
            [f"evt_known{n:04d}" for n in range(3)] + [f"evt_lost{n:04d}" for n in range(8)]
        )
        assert len(receiver.received) == 11
    finally:
        await fake.stop()


async def test_svix_messages_that_failed_are_resent_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    fake = await FakeSvix().start()
    try:
        source = f"""
[[sources]]
name = "svix"
verify = "standard-webhooks"
secret = "{SVIX_SECRET}"
idempotency_key = "header:svix-id"
occurred_at = "header:svix-timestamp"
[sources.catch_up]
api_key = "{fake.key}"
base_url = "{fake.url}"
app_id = "{fake.app_id}"
endpoint_id = "{fake.endpoint_id}"
"""
        port = free_port()
        config = write_config(tmp_path, source, receiver, port=port)
        fake.relay_url = f"http://127.0.0.1:{port}/in/svix"
        async with running(load_config(config)):
            pass
        now = time.time()
        for n in range(10):
            msg = f"msg_{n:027d}"
            fake.messages[msg] = json.dumps({"type": "user.created", "n": n}).encode()
            for _ in range(1 + n % 3):  # Svix retried some of them, each attempt failed
                fake.attempt(msg, 2, 0, now)
        fake.throttle = 1
        async with running(load_config(config)) as relay:
            await wait_for(lambda: len(receiver.received) >= 10, timeout=60)
            assert sorted(fake.resent) == sorted(fake.messages)
            status, report = await catch_up(relay, {"source": "svix", "since": "10m"})
            assert status == 200, report
            assert (report["fetched"], report["known"], report["requested"]) == (10, 10, 0)
        keys = query(tmp_path / "relay.db", "SELECT idempotency_key FROM events ORDER BY 1")
        assert [k for (k,) in keys] == sorted(fake.messages)
        assert len(receiver.received) == 10
        assert svix_headers  # the fake signs as Svix does (tests/catchup/fakes.py)
    finally:
        await fake.stop()


# -- interrupted -----------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_a_catch_up_killed_midway_runs_again_and_stores_each_event_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    fake = await FakeStripe(delay=0.3).start()
    process = None
    try:
        config = write_config(tmp_path, stripe_source(fake), receiver)
        process = RelayProcess(config).start()
        assert process.terminate() == 0  # relay ran and beat
        now = int(time.time())
        fake.events = [stripe_event(n, now) for n in range(1000)]
        process = RelayProcess(config).start()
        await wait_for(lambda: fake.pages >= 4, timeout=60)  # in the middle of the run
        process.kill()
        stored = query(tmp_path / "relay.db", "SELECT COUNT(*) FROM events")[0][0]
        assert 0 < stored < 1000
        window = query(tmp_path / "relay.db", "SELECT state, tries FROM catch_ups")
        assert window == [("open", 1)]
        process = RelayProcess(config).start()
        await wait_for(
            lambda: (
                query(tmp_path / "relay.db", "SELECT COUNT(*) FROM catch_ups WHERE state = 'open'")
                == [(0,)]
            ),
            timeout=120,
        )
        await wait_for(
            lambda: len({json.loads(r.body)["id"] for r in receiver.received}) >= 1000, 120
        )
        process.terminate()
        rows = query(
            tmp_path / "relay.db",
            "SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM events",
        )
        assert rows == [(1000, 1000)]  # stored once each
        delivered = {json.loads(r.body)["id"] for r in receiver.received}
        assert delivered == {e["id"] for e in fake.events}  # each at least once
    finally:
        if process is not None:
            process.ensure_stopped()
        await fake.stop()


async def test_the_periodic_recheck_asks_stripe_only_for_what_is_not_delivered(
    tmp_path: Path,
) -> None:
    """Every interval, only events some endpoint has not received yet are listed
    (``delivery_success=false``); after a downtime, all of them."""
    from relay.catchup import stripe
    from relay.catchup.api import Api
    from relay.configtypes import CatchUpConfig
    from relay.records import Window

    fake = await FakeStripe().start()
    try:
        now = int(time.time())
        fake.events = [stripe_event(n, now) for n in range(5)]
        fake.events[3]["pending_webhooks"] = 1  # Stripe still retries this one somewhere
        config = CatchUpConfig.model_validate({"api_key": fake.key, "base_url": fake.url})

        class Seen:
            source, dry_run = "stripe", True

            async def known(self, keys: list[str]) -> set[str]:
                return set()

            async def admit(self, body: bytes) -> bool:
                raise AssertionError("a dry run stores nothing")

        async with aiohttp.ClientSession() as session:
            api = Api(session, "stripe", fake.url, stripe.headers(config))
            for reason, fetched in (("interval", 1), ("downtime", 5)):
                window = Window("stripe", now - 60, now + 60, reason)
                found = await stripe.run(api, config, window, Seen())
                assert found.tally.fetched == fetched, reason
        assert "delivery_success=false" in fake.requests[0][1]
        assert "delivery_success" not in fake.requests[1][1]
    finally:
        await fake.stop()


async def test_two_relays_on_postgresql_catch_up_an_outage_of_both_once(
    tmp_path: Path, receiver: Receiver, pg_url: str
) -> None:
    """Both relays of a cluster were down: the downtime is caught up by the cluster, each
    event stored and delivered once, whichever relay ran it."""
    fake = await FakeStripe().start()
    try:
        config = write_config(tmp_path, stripe_source(fake), receiver)
        text = config.read_text().replace(f'path = "{tmp_path / "relay.db"}"', f'url = "{pg_url}"')
        config.write_text(text)
        async with running(load_config(config)), running(load_config(config)):
            pass  # both ran and beat
        now = int(time.time())
        fake.events = [stripe_event(n, now) for n in range(50)]
        async with running(load_config(config)), running(load_config(config)):
            await wait_for(lambda: len(receiver.received) >= 50, timeout=60)
            import psycopg

            async def settled() -> bool:
                async with await psycopg.AsyncConnection.connect(pg_url) as conn:
                    cur = await conn.execute("SELECT COUNT(*) FROM catch_ups WHERE state <> 'done'")
                    row = await cur.fetchone()
                    return row is not None and row[0] == 0

            await wait_for(settled, timeout=60)
            async with await psycopg.AsyncConnection.connect(pg_url) as conn:
                cur = await conn.execute(
                    "SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM events"
                )
                assert await cur.fetchone() == (50, 50)
        sent = [json.loads(r.body)["id"] for r in receiver.received]
        assert sorted(sent) == sorted(e["id"] for e in fake.events)  # each once
    finally:
        await fake.stop()
