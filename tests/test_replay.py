"""Replay anything, once (issue 16), end to end: a real relay started from a config file,
real receivers, the CLI's `main(argv)` and the admin API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.app import Relay
from relay.cli import main
from relay.config import load_config
from tests.helpers import SECRET, Receiver, post, query, wait_for

TOKEN = "replay-token"


def _config(tmp: Path, a: Receiver, b: Receiver, routes_to_b: bool = False) -> Path:
    path = tmp / "relay.toml"
    extra = '[[routes]]\nsource = "demo"\ndestinations = ["b"]\ntypes = ["late.*"]\n'
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"
[storage]
path = "{tmp / "relay.db"}"
[admin]
listen = "unix:{tmp / "admin.sock"}"
token = "{TOKEN}"
[[sources]]
name = "demo"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
idempotency_key = "header:X-Request-Id"
event_type = "json:/type"
[[destinations]]
name = "a"
url = "{a.url}"
[destinations.retry]
max_attempts = 1
[[destinations]]
name = "b"
url = "{b.url}"
[[routes]]
source = "demo"
destinations = ["a"]
types = ["invoice.*"]
{extra if routes_to_b else ""}"""
    )
    return path


@asynccontextmanager
async def relay_from(config: Path) -> AsyncIterator[Relay]:
    relay = Relay(load_config(config), config)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


async def cli(config: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, [*argv, "--config", str(config)])
    return code, capsys.readouterr().out


@pytest.fixture
async def b_receiver() -> AsyncIterator[Receiver]:
    rx = await Receiver().start()
    yield rx
    await rx.stop()


async def test_replay_an_event_again_elsewhere_and_back_fill_an_unrouted_one(
    tmp_path: Path,
    receiver: Receiver,
    b_receiver: Receiver,
    client: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, receiver, b_receiver)
    async with relay_from(config) as relay:
        _, headers, _ = await post(client, relay.port, b'{"type": "invoice.paid"}', key="e1")
        delivered = headers["X-Relay-Event-Id"]
        _, headers, _ = await post(client, relay.port, b'{"type": "late.one"}', key="e2")
        unrouted = headers["X-Relay-Event-Id"]
        await wait_for(lambda: len(receiver.received) == 1)

        code, out = await cli(config, "replay", "--event", delivered, capsys=capsys)
        assert (code, out.strip()) == (0, "replayed 1 delivery of 1 event")
        await wait_for(lambda: len(receiver.received) == 2)  # to a again: it was delivered

        code, _ = await cli(
            config, "replay", "--event", delivered, "--destination", "b", capsys=capsys
        )
        assert code == 0
        await wait_for(lambda: len(b_receiver.received) == 1)  # b is not routed from demo
        assert b_receiver.received[0].headers["X-Relay-Event-Id"] == delivered

        code, out = await cli(config, "replay", "--event", unrouted, capsys=capsys)
        assert (code, out.strip()) == (0, "replayed 0 deliveries of 0 events")  # nowhere yet
        _config(tmp_path, receiver, b_receiver, routes_to_b=True)  # a route to b is added
        assert (await cli(config, "reload", capsys=capsys))[0] == 0
        code, out = await cli(config, "replay", "--event", unrouted, capsys=capsys)
        assert code == 0
        await wait_for(lambda: len(b_receiver.received) == 2)
        assert b_receiver.received[1].headers["X-Relay-Event-Id"] == unrouted

        code, _ = await cli(config, "replay", "--event", "evt_unknown", capsys=capsys)
        assert code == 4
        code, _ = await cli(
            config, "replay", "--event", delivered, "--destination", "nope", capsys=capsys
        )
        assert code == 1  # no such destination: said, nothing replayed
    assert [r.headers["X-Relay-Event-Id"] for r in receiver.received] == [delivered] * 2


async def test_a_filter_replay_counts_exactly_what_it_then_replays(
    tmp_path: Path,
    receiver: Receiver,
    b_receiver: Receiver,
    client: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.default = 422  # every delivery to a dies
    config = _config(tmp_path, receiver, b_receiver)
    db = tmp_path / "relay.db"
    async with relay_from(config) as relay:
        for i in range(6):
            await post(client, relay.port, b'{"type": "invoice.paid"}', key=f"k{i}")
        await wait_for(lambda: query(db, "SELECT COUNT(*) FROM v_dead") == [(6,)])
        times = [t for (t,) in query(db, "SELECT received_at FROM events ORDER BY received_at")]
        since, until = str(times[1]), str((times[4] + times[5]) / 2)  # events 2, 3, 4, 5
        window = ["--since", since, "--until", until, "--json"]
        code, out = await cli(config, "replay", *window, "--dry-run", capsys=capsys)
        dry = json.loads(out)
        assert (code, dry["matched"], dry["events"], dry["replayed"]) == (0, 4, 4, 0)
        assert len(dry["sample"]) == 4
        code, out = await cli(config, "replay", *window, capsys=capsys)
        done = json.loads(out)
        assert (done["replayed"], done["events"]) == (dry["matched"], dry["events"])
        # The replays died too (recorded after the receiver answered: wait for the record,
        # not the answer): the same window now takes them (each once), not the originals
        # beside them, and the count again matches the dry run.
        replays_dead = (
            "SELECT COUNT(*) FROM deliveries WHERE state = 'dead' AND replay_of IS NOT NULL"
        )
        await wait_for(lambda: query(db, replays_dead) == [(4,)])
        code, out = await cli(config, "replay", *window, "--dry-run", capsys=capsys)
        assert json.loads(out)["matched"] == 4
        code, out = await cli(config, "replay", *window, capsys=capsys)
        assert json.loads(out)["replayed"] == 4
        await wait_for(lambda: len(receiver.received) == 14)


async def test_the_same_idempotency_key_replays_once(
    tmp_path: Path,
    receiver: Receiver,
    b_receiver: Receiver,
    client: aiohttp.ClientSession,
) -> None:
    config = _config(tmp_path, receiver, b_receiver)
    async with relay_from(config) as relay:
        _, headers, _ = await post(client, relay.port, b'{"type": "invoice.paid"}', key="e1")
        event = headers["X-Relay-Event-Id"]
        await wait_for(lambda: len(receiver.received) == 1)
        connector = aiohttp.UnixConnector(path=str(tmp_path / "admin.sock"))
        async with aiohttp.ClientSession(connector=connector) as admin:

            async def ask(key: str) -> dict[str, object]:
                async with admin.post(
                    "http://relay/api/replay",
                    json={"event_id": event},
                    headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key},
                ) as response:
                    assert response.status == 200
                    answer: dict[str, object] = await response.json()
                    return answer

            first, second = await ask("key-1"), await ask("key-1")
            together = await asyncio.gather(*(ask("key-2") for _ in range(5)))
        assert (first["replayed"], first["repeated"]) == (1, False)
        assert (second["replayed"], second["repeated"]) == (1, True)
        assert sorted(bool(a["repeated"]) for a in together) == [False] + [True] * 4
        await wait_for(lambda: len(receiver.received) == 3)  # the original and two replays
        rows = query(tmp_path / "relay.db", "SELECT COUNT(*) FROM deliveries")
    assert rows == [(3,)]
    assert len(receiver.received) == 3


async def test_api_limits_are_said_not_silently_applied(
    tmp_path: Path, receiver: Receiver, b_receiver: Receiver
) -> None:
    config = _config(tmp_path, receiver, b_receiver)
    async with relay_from(config):
        connector = aiohttp.UnixConnector(path=str(tmp_path / "admin.sock"))
        async with aiohttp.ClientSession(connector=connector) as admin:
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            for path in ("/api/events?limit=5000", "/api/rejections?limit=5000"):
                async with admin.get("http://relay" + path, headers=bearer) as response:
                    assert response.status == 400, path
                    assert "from 1 to 1000" in (await response.json())["error"]


async def test_tail_follows_commit_order(
    tmp_path: Path,
    receiver: Receiver,
    b_receiver: Receiver,
    client: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Event ids are made when a request arrives; a slow request's id sorts before events
    committed ahead of it. tail follows the order of commits, so it skips none."""
    config = _config(tmp_path, receiver, b_receiver)
    async with relay_from(config) as relay:
        follower = asyncio.create_task(
            asyncio.to_thread(
                main,
                [
                    "tail",
                    "--count",
                    "3",
                    "--timeout",
                    "10",
                    "--json",
                    "--interval",
                    "0.05",
                    "--config",
                    str(config),
                ],
            )
        )
        seen = ""

        def following() -> bool:
            nonlocal seen
            seen += capsys.readouterr().err
            return "following new events" in seen

        await wait_for(following)
        printed = ""

        def shown(key: str) -> bool:
            nonlocal printed
            printed += capsys.readouterr().out
            return key in printed

        await post(client, relay.port, b'{"type": "invoice.paid"}', key="now-1")
        await wait_for(lambda: shown("now-1"))  # tail has gone past it
        # An id from the past, committed now: what a request slow to arrive in full gets.
        from relay.ids import new_event_id
        from relay.records import NewEvent

        old = NewEvent(
            new_event_id(time.time() - 60),
            "demo",
            time.time() - 60,
            "slow",
            None,
            None,
            None,
            "[]",
            b"{}",
            (),
        )
        await relay.store.ingest(old)
        await post(client, relay.port, b'{"type": "invoice.paid"}', key="now-2")
        assert await follower == 0
        printed += capsys.readouterr().out
    keys = [json.loads(line)["idempotency_key"] for line in printed.splitlines()]
    assert keys == ["now-1", "slow", "now-2"]


async def test_a_delivered_filter_replay_sends_each_event_once_whatever_its_history(
    tmp_path: Path,
    receiver: Receiver,
    b_receiver: Receiver,
    client: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 29: the filter selected delivered deliveries, not events, so an event replayed
    before went out once per earlier delivery: 3 events, then "4 deliveries of 3 events",
    then 8. Now each selected event goes once per destination per request, and the dry run
    counts the same."""
    config = _config(tmp_path, receiver, b_receiver)
    async with relay_from(config) as relay:
        ids = []
        for i in range(3):
            _, headers, _ = await post(client, relay.port, b'{"type": "invoice.paid"}', key=f"{i}")
            ids.append(headers["X-Relay-Event-Id"])
        await wait_for(lambda: len(receiver.received) == 3)
        assert (await cli(config, "replay", "--event", ids[0], capsys=capsys))[0] == 0
        await wait_for(lambda: len(receiver.received) == 4)  # event 0 twice delivered now
        sent = 4
        for _ in range(3):  # each round would double the history before
            code, out = await cli(
                config, "replay", "--state", "delivered", "--dry-run", "--json", capsys=capsys
            )
            dry = json.loads(out)
            assert (code, dry["matched"], dry["events"]) == (0, 3, 3)
            code, out = await cli(config, "replay", "--state", "delivered", "--json", capsys=capsys)
            assert (code, json.loads(out)["replayed"]) == (0, 3)
            sent += 3
            await wait_for(lambda s=sent: len(receiver.received) == s)
        seen = [r.headers["X-Relay-Event-Id"] for r in receiver.received]
    assert sorted(seen.count(e) for e in ids) == [4, 4, 5]


async def test_a_reused_idempotency_key_with_another_request_is_refused(
    tmp_path: Path,
    receiver: Receiver,
    b_receiver: Receiver,
    client: aiohttp.ClientSession,
) -> None:
    """Issue 29: the key reused for a different request answered 200 {"replayed": 1,
    "repeated": true, "sample": [<the new event>]} although nothing was replayed. Now: 422
    naming the key, nothing made; the same request again answers the first answer."""
    config = _config(tmp_path, receiver, b_receiver)
    async with relay_from(config) as relay:
        ids = []
        for key in ("e1", "e2"):
            _, headers, _ = await post(client, relay.port, b'{"type": "invoice.paid"}', key=key)
            ids.append(headers["X-Relay-Event-Id"])
        await wait_for(lambda: len(receiver.received) == 2)
        connector = aiohttp.UnixConnector(path=str(tmp_path / "admin.sock"))
        async with aiohttp.ClientSession(connector=connector) as admin:

            async def ask(body: dict[str, object]) -> tuple[int, dict[str, Any], str | None]:
                async with admin.post(
                    "http://relay/api/replay",
                    json=body,
                    headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k-1"},
                ) as response:
                    again = response.headers.get("Idempotent-Replayed")
                    return response.status, await response.json(), again

            first = await ask({"event_id": ids[0]})
            other = await ask({"event_id": ids[1]})
            repeat = await ask({"event_id": ids[0]})
        assert first[0] == 200
        assert first[1]["replayed"] == 1
        assert other[0] == 422
        assert "k-1" in other[1]["error"]
        assert "another request" in other[1]["error"]
        assert repeat[0] == 200
        assert repeat[2] == "true"
        assert {k: v for k, v in repeat[1].items() if k != "repeated"} == {
            k: v for k, v in first[1].items() if k != "repeated"
        }
        assert repeat[1]["sample"] == [{"event_id": ids[0], "destination": "a"}]
        await wait_for(lambda: len(receiver.received) == 3)
        rows = query(tmp_path / "relay.db", "SELECT COUNT(*) FROM deliveries")
    assert rows == [(3,)]  # two originals and one replay: the 422 made nothing


async def test_replay_by_delivery_says_why_nothing_went_and_event_takes_a_prefix(
    tmp_path: Path,
    receiver: Receiver,
    b_receiver: Receiver,
    client: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 29: `replay --delivery N` of a dead delivery a replay already repeats printed
    "replayed 0 deliveries of 0 events" and nothing else; `--event` took no prefix; a bad
    `--since` exited 1 (or 3), not 2 as documented."""
    receiver.default = 422
    config = _config(tmp_path, receiver, b_receiver)
    db = tmp_path / "relay.db"
    async with relay_from(config) as relay:
        _, headers, _ = await post(client, relay.port, b'{"type": "invoice.paid"}', key="d1")
        event = headers["X-Relay-Event-Id"]
        await wait_for(lambda: query(db, "SELECT COUNT(*) FROM v_dead") == [(1,)])
        assert (await cli(config, "replay", "--delivery", "1", capsys=capsys))[0] == 0
        code, out = await cli(config, "replay", "--delivery", "1", capsys=capsys)
        assert code == 0
        assert "replayed 0 deliveries of 0 events" in out
        assert "replayed before" in out
        assert "--again" in out
        code, out = await cli(config, "replay", "--event", event[:12], capsys=capsys)
        assert (code, out.strip()) == (0, "replayed 1 delivery of 1 event")
        assert (await cli(config, "replay", "--event", "evt_zz", capsys=capsys))[0] == 4
        assert (await cli(config, "replay", "--since", "foo", capsys=capsys))[0] == 2
    # Not running: a bad time is still wrong usage, said before anything else.
    assert (await cli(config, "replay", "--since", "foo", "--all", capsys=capsys))[0] == 2
