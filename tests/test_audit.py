"""The audit trail (issue 16): every operator action, who did it, from where, and what came
of it; `relay audit`, the admin API and the console list it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Receiver, post, wait_for
from tests.test_replay import TOKEN, _config, cli, relay_from


async def test_replay_pause_and_reload_are_in_the_audit_trail(
    tmp_path: Path,
    receiver: Receiver,
    client: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = await Receiver().start()
    config = _config(tmp_path, receiver, b)
    try:
        async with relay_from(config) as relay:
            _, headers, _ = await post(client, relay.port, b'{"type": "invoice.paid"}', key="e1")
            await wait_for(lambda: len(receiver.received) == 1)
            event = headers["X-Relay-Event-Id"]
            assert (await cli(config, "replay", "--event", event, capsys=capsys))[0] == 0
            assert (await cli(config, "pause", "a", capsys=capsys))[0] == 0
            assert (await cli(config, "reload", capsys=capsys))[0] == 0
            backup = tmp_path / "copy.db"
            assert (await cli(config, "backup", str(backup), capsys=capsys))[0] == 0
            # The console: a failed and a good sign-in.
            base = f"http://{relay.admin_address}"
            connector = aiohttp.UnixConnector(path=str(tmp_path / "admin.sock"))
            async with aiohttp.ClientSession(connector=connector) as console:
                for token in ("wrong", TOKEN):
                    async with console.post(
                        "http://relay/ui/login", data={"token": token}, allow_redirects=False
                    ) as r:
                        assert r.status == 303
                        cookie = r.headers.get("Set-Cookie", "")
                found = re.search(r"relay_session=([^;]+)", cookie)
                assert found is not None
                async with console.get(
                    "http://relay/ui/audit", headers={"Cookie": f"relay_session={found.group(1)}"}
                ) as r:
                    page = await r.text()
                async with console.get(
                    "http://relay/api/audit", headers={"Authorization": f"Bearer {TOKEN}"}
                ) as r:
                    api = (await r.json())["audit"]
            assert base
        code, out = await cli(config, "audit", "--json", capsys=capsys)
    finally:
        await b.stop()
    assert code == 0
    rows = list(reversed(json.loads(out)))  # oldest first
    actions = [(r["action"], r["target"]) for r in rows]
    assert actions == [
        ("replay", f"event {event}"),
        ("pause", "a"),
        ("reload", None),
        ("backup", str(backup)),
        ("sign-in-failed", None),
        ("sign-in", None),
    ]
    replay, pause, reload, saved, failed, signed = rows
    # The person whose token the CLI used ([admin] token: admin), from the socket, and who
    # ran the command.
    assert replay["actor"] == "admin"
    assert replay["origin"].startswith("unix (cli:")
    assert replay["result"]["replayed"] == 1
    # What was asked, and a digest of the request as sent (a reused Idempotency-Key with
    # another request is told apart by it: issue 29).
    assert replay["params"]["event"] == event
    assert set(replay["params"]) == {"event", "request"}
    assert len(replay["params"]["request"]) == 32
    assert pause["result"] == {"paused": True}
    assert pause["params"] == {"reason": "paused by an operator"}
    assert reload["result"]["reloaded"] is True
    assert len(reload["result"]["digest"]) == 64  # which config: its SHA-256
    assert saved["result"]["bytes"] == backup.stat().st_size
    assert (failed["actor"], signed["actor"]) == ("console", "admin")  # who got in
    assert [r["action"] for r in api] == [a for a, _ in reversed(actions)]
    assert "sign-in-failed" in page


async def test_an_automatic_pause_is_in_the_audit_trail_as_relay(
    tmp_path: Path, client: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import SteppedClock, running, settings_for

    down = await Receiver().start()
    down.default = 503
    clock = SteppedClock()
    circuit = {"failures": 1, "cooldown": 1.0, "pause_after": 2.0}
    settings = settings_for(tmp_path / "relay.db", down.url, destination={"circuit": circuit})
    try:
        async with running(settings, clock) as relay:
            await post(client, relay.port, b"{}")
            lane = relay.scheduler.lane("app")
            for _ in range(10):
                if lane.paused is not None:
                    break
                sent = len(down.received)
                clock.advance(1.5)
                lane.notify()
                await wait_for(
                    lambda sent=sent: len(down.received) > sent or lane.paused is not None
                )
            assert lane.paused is not None
            rows = await relay.store.read(lambda r: r.audit())
    finally:
        await down.stop()
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [("relay", "pause", "app")]
