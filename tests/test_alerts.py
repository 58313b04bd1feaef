"""Alerts that reach a person (issue 16), end to end: a real relay, a receiver that fails,
and a receiver standing in for the pager or Slack, which gets the alerts as deliveries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from relay.incidents import QUIET
from tests.helpers import Receiver, SteppedClock, post, query, running, settings_for, wait_for
from tests.test_console import TOKEN as CONSOLE_TOKEN
from tests.test_console import _cookie, _sign_in


def _settings(db: Path, app: Receiver, ops_url: str, alerts: dict[str, Any], **more: Any) -> Any:
    return settings_for(
        db,
        app.url,
        destinations=[
            {"name": "app", "url": app.url, "retry": {"max_attempts": 1}},
            {"name": "ops", "url": ops_url, "retry": {"max_attempts": 1}},
        ],
        alerts={"destination": "ops", **alerts},
        **more,
    )


async def test_dead_deliveries_alert_once_per_interval(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    receiver.default = 400  # every delivery to app dies at once
    ops = await Receiver().start()
    every = 1.0
    settings = _settings(tmp_path / "relay.db", receiver, ops.url, {"every": f"{every}s"})
    try:
        async with running(settings) as relay:
            first = (await post(client, relay.port, b'{"type": "a"}'))[1]["X-Relay-Event-Id"]
            await wait_for(lambda: len(ops.received) == 1)
            for _ in range(3):  # three more die within the interval
                await post(client, relay.port, b'{"type": "b"}')
            await wait_for(lambda: len(receiver.received) == 4)
            await wait_for(lambda: len(ops.received) == 2)  # the rest, in one alert
    finally:
        await ops.stop()
    one, two = (json.loads(r.body) for r in ops.received)
    assert (one["kind"], one["destination"], one["count"]) == ("dead", "app", 1)
    assert one["first_event_id"] == first
    assert "HTTP 400" in one["first_error"]
    assert "app" in one["summary"]
    assert (two["kind"], two["count"]) == ("dead", 3)
    assert ops.received[1].at - ops.received[0].at >= every * 0.99  # once per interval


async def test_a_quiet_source_alerts_and_a_busy_one_does_not(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    ops = await Receiver().start()
    extra_source = {"name": "busy", "verify": "none"}
    settings = _settings(
        tmp_path / "relay.db",
        receiver,
        ops.url,
        {"quiet": {"demo": "1s", "busy": "1s"}, "format": "slack"},
        sources=[
            {"name": "demo", "verify": "hmac", "secret": "s", "prefix": "sha256="},
            extra_source,
        ],
        routes=[],
    )
    try:
        async with running(settings) as relay:
            url = f"http://127.0.0.1:{relay.port}/in/busy"
            for _ in range(100):  # keep busy busy until the quiet one is reported
                async with client.post(url, data=b"{}") as response:
                    assert response.status == 200
                if ops.received:
                    break
                await asyncio.sleep(0.1)
    finally:
        await ops.stop()
    texts = [json.loads(r.body)["text"] for r in ops.received]
    assert len(texts) == 1  # slack format: {"text": …}
    assert texts[0].startswith("demo has received nothing for")


async def test_an_alert_destination_that_is_down_raises_no_alerts_about_itself(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    receiver.default = 400
    closed = await Receiver().start()
    down = closed.url
    await closed.stop()  # nothing listens there: every alert delivery dies
    db = tmp_path / "relay.db"
    settings = _settings(db, receiver, down, {"every": "1s"})
    async with running(settings) as relay:
        await post(client, relay.port, b'{"type": "a"}')
        dead_alert = "SELECT COUNT(*) FROM v_dead WHERE destination = 'ops'"
        await wait_for(lambda: query(db, dead_alert) == [(1,)])  # the alert died
        assert relay.alerting is not None
        await wait_for(lambda: relay.alerting is not None and relay.alerting.ignored >= 1)
    # The alert's death was seen and not alerted on: one alert event, about app.
    alerts = query(db, "SELECT event_type FROM events WHERE source = '_relay'")
    assert alerts == [("alert.dead",)]


async def test_refused_requests_and_a_backlog_alert(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    ops = await Receiver().start()
    rules = {"rejections": {"share": 0.5, "window": "1m", "min": 10}, "backlog": "1s"}
    settings = _settings(tmp_path / "relay.db", receiver, ops.url, rules)
    try:
        async with running(settings) as relay:
            await relay.scheduler.pause("app")  # its deliveries wait: a backlog builds
            await post(client, relay.port, b'{"type": "a"}')
            for _ in range(12):  # a changed secret: most requests refused
                status, _, _ = await post(client, relay.port, b"{}", signature="sha256=00")
                assert status == 401

            def kinds() -> set[str]:
                return {json.loads(r.body)["kind"] for r in ops.received}

            await wait_for(lambda: {"rejections", "backlog"} <= kinds())
    finally:
        await ops.stop()
    by_kind = {json.loads(r.body)["kind"]: json.loads(r.body) for r in ops.received}
    assert by_kind["rejections"]["source"] == "demo"
    assert by_kind["rejections"]["share"] > 0.5
    assert by_kind["backlog"]["destination"] == "app"
    assert by_kind["backlog"]["oldest_seconds"] >= 1


async def test_an_outage_is_one_incident_told_when_it_opens_and_when_it_ends(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 33: a destination failing with 500 (a body saying why), then recovering: one
    alert when the incident opens (its class and a sample), none for what dies within
    `every`, and one `resolved` alert after the quiet period, with how long it lasted and
    how many are left to replay; the incidents table keeps it."""
    receiver.default = (500, {})
    ops = await Receiver().start()
    clock = SteppedClock()
    db = tmp_path / "relay.db"
    admin = {"listen": "127.0.0.1:0", "token": CONSOLE_TOKEN}
    settings = _settings(db, receiver, ops.url, {"every": "10m"}, admin=admin)
    try:
        async with running(settings, clock) as relay:
            for n in range(3):
                assert (await post(client, relay.port, b'{"type": "a"}', key=f"k{n}"))[0] == 200
            await wait_for(lambda: len(receiver.received) == 3)
            await wait_for(lambda: len(ops.received) == 1)  # the open, at once
            receiver.default = 200  # it recovered
            assert (await post(client, relay.port, b'{"type": "a"}', key="k9"))[0] == 200
            await wait_for(lambda: len(receiver.received) == 4)
            clock.advance(QUIET + 1)  # quiet for longer than the quiet period
            await wait_for(lambda: len(ops.received) == 2)
            # The alerts page lists it, with why and what is left to replay.
            base = f"http://{relay.admin_address}"
            _, _, raw = await _sign_in(client, base)
            async with client.get(base + "/ui/alerts", headers=_cookie(raw)) as r:
                page = await r.text()
    finally:
        await ops.stop()
    opened, ended = (json.loads(r.body) for r in ops.received)
    assert (opened["kind"], opened["status"], opened["destination"]) == ("dead", "open", "app")
    assert (opened["count"], opened["failure_class"]) == (1, "HTTP 5xx")
    assert opened["sample"]["status"] == 500
    assert opened["sample"]["body"] == "answer 500"  # the receiver's own words
    assert opened["incident"] is not None
    assert (ended["kind"], ended["status"], ended["incident"]) == (
        "resolved",
        "resolved",
        opened["incident"],
    )
    assert (ended["incident_kind"], ended["left_to_replay"]) == ("dead", 3)
    assert ended["duration_seconds"] >= QUIET
    rows = query(db, "SELECT status, failures, dominant, left_to_replay FROM incidents")
    assert rows == [("resolved", 3, "HTTP 5xx", 3)]
    row = page[page.index('<tr class="incident resolved" id="incident-') :].split("</tr>")[0]
    assert "HTTP 5xx: HTTP 500 answer 500" in row
    assert "<td>3</td><td>3</td>" in row  # failures, left to replay
