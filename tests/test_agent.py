"""`relay agent` end to end (issue 17): a real public relay, real agent processes, real
receivers, and a misbehaving TCP proxy between them, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import aiohttp

from tests.agents import AgentProcess, agent_config, relay_config, relay_url
from tests.helpers import Receiver, post, query, wait_for
from tests.process import RelayProcess
from tests.tcp_proxy import Proxy


async def _post_many(port: int, keys: list[str], body: dict[str, object] | None = None) -> None:
    async with aiohttp.ClientSession() as client:
        for key in keys:
            payload = json.dumps({"key": key, **(body or {})}).encode()
            status, _, _ = await post(client, port, payload, key=key)
            assert status == 200


def _states(db: Path) -> dict[str, int]:
    return dict(query(db, "SELECT state, COUNT(*) FROM deliveries GROUP BY state"))


def _leased(db: Path) -> int:
    return int(query(db, "SELECT COUNT(*) FROM deliveries WHERE lease_until IS NOT NULL")[0][0])


async def test_events_go_through_the_agent_with_the_receivers_statuses(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "relay.db"
    relay = RelayProcess(relay_config(tmp_path, receiver.url))
    agent = AgentProcess(agent_config(tmp_path, "", f'"{receiver.url}"'))
    try:
        relay.start()
        agent.config.write_text(
            agent.config.read_text().replace('relay = ""', f'relay = "{relay_url(relay)}"')
        )
        agent.start()
        receiver.script = [201] * 10  # the first ten answer 201, the rest 200
        await _post_many(relay.port, [f"k{i}" for i in range(200)])
        await wait_for(lambda: _states(db) == {"delivered": 200}, timeout=30)
        assert agent.stop() == 0
        assert relay.terminate() == 0
    finally:
        agent.ensure_stopped()
        relay.ensure_stopped()
    keys = Counter(json.loads(r.body)["key"] for r in receiver.received)
    assert set(keys) == {f"k{i}" for i in range(200)}
    statuses = Counter(s for (s,) in query(db, "SELECT status FROM attempts"))
    assert statuses == {201: 10, 200: 190}  # what the internal receiver answered


async def test_a_killed_agent_loses_nothing_and_offline_spends_no_attempts(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "relay.db"
    receiver.default = "slow"  # 0.3 s each: deliveries are in flight when the agent dies
    relay = RelayProcess(relay_config(tmp_path, receiver.url)).start()
    agent = AgentProcess(agent_config(tmp_path, relay_url(relay), f'"{receiver.url}"'))
    try:
        agent.start()
        first = [f"a{i}" for i in range(200)]
        posting = asyncio.create_task(_post_many(relay.port, first))
        await wait_for(lambda: len(receiver.received) >= 40, timeout=30)
        agent.kill()
        killed_at = time.monotonic()
        await posting
        await _post_many(relay.port, [f"b{i}" for i in range(200)])  # while it is down
        attempts_while_down = query(db, "SELECT SUM(attempts) FROM deliveries")[0][0]
        pending = _states(db).get("pending", 0)
        assert pending >= 200  # waiting, not failing
        assert query(db, "SELECT COUNT(*) FROM attempts WHERE status IS NULL") == [(0,)]
        agent.start()
        receiver.default = 200
        await wait_for(lambda: _states(db) == {"delivered": 400}, timeout=60)
        assert _leased(db) == 0
        assert agent.stop() == 0
        assert relay.terminate() == 0
    finally:
        agent.ensure_stopped()
        relay.ensure_stopped()
    receipts = Counter(json.loads(r.body)["key"] for r in receiver.received)
    assert set(receipts) == set(first) | {f"b{i}" for i in range(200)}  # nothing lost
    duplicates = {key: n - 1 for key, n in receipts.items() if n > 1}
    # Why each: it was in flight at the receiver when the agent was killed, so its lease
    # went back and it went again. So its first receipt came before the kill, and there are
    # at most as many as the agent's credits.
    first_seen = {}
    for r in receiver.received:
        first_seen.setdefault(json.loads(r.body)["key"], r.at)
    assert all(first_seen[key] < killed_at for key in duplicates), duplicates
    assert sum(duplicates.values()) <= 10, duplicates
    print(f"\n{len(receipts)} events, {sum(duplicates.values())} duplicates: {sorted(duplicates)}")
    assert attempts_while_down is not None


async def test_a_misbehaving_connection_loses_nothing_and_leaves_no_lease(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "relay.db"
    relay = RelayProcess(relay_config(tmp_path, receiver.url)).start()
    proxy = await Proxy(relay.port).start()
    agent = AgentProcess(
        agent_config(tmp_path, f"http://127.0.0.1:{proxy.port}", f'"{receiver.url}"')
    )
    try:
        await asyncio.to_thread(agent.start)  # the proxy runs on this loop: do not block it
        keys = [f"p{i}" for i in range(300)]
        posting = asyncio.create_task(_post_many(relay.port, keys))
        for trouble in (proxy.drop, proxy.stall, proxy.half_open, proxy.drop):
            await asyncio.sleep(0.5)
            trouble()
            await asyncio.sleep(0.5 if trouble is proxy.drop else 3.5)  # past the heartbeat
            proxy.heal()
        await posting
        await wait_for(lambda: _states(db) == {"delivered": 300}, timeout=60)
        assert _leased(db) == 0
        assert proxy.connections >= 3  # it did reconnect
        assert await asyncio.to_thread(agent.stop) == 0
        assert relay.terminate() == 0
    finally:
        agent.ensure_stopped()
        relay.ensure_stopped()
        await proxy.stop()
    assert {json.loads(r.body)["key"] for r in receiver.received} == set(keys)


async def test_outcomes_and_attempts_match_a_direct_destination(tmp_path: Path) -> None:
    via_agent, direct = await Receiver().start(), await Receiver().start()
    both = [via_agent, direct]
    same = (
        """[destinations.retry]
max_attempts = 3
base = "50ms"
cap = "100ms"
[[destinations]]
name = "direct"
url = "URL"
timeout = "1s"
[destinations.retry]
max_attempts = 3
base = "50ms"
cap = "100ms"
[[routes]]
source = "demo"
destinations = ["direct"]"""
    ).replace("URL", direct.url)
    config = relay_config(tmp_path, via_agent.url, extra=same)
    text = config.read_text().replace('timeout = "2s"', 'timeout = "1s"')
    text = text.replace('[destinations.retry]\nbase = "50ms"\ncap = "200ms"\n', "", 1)
    config.write_text(text)
    db = tmp_path / "relay.db"
    relay = RelayProcess(config).start()
    agent = AgentProcess(agent_config(tmp_path, relay_url(relay), f'"{via_agent.url}"'))
    try:
        agent.start()
        for n, script in enumerate(([503, 200], [400], ["hang", "hang", "hang"])):
            for rx in both:
                rx.script = list(script)
            await _post_many(relay.port, [f"s{n}"])
            await wait_for(
                lambda: (
                    query(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'") == [(0,)]
                ),
                timeout=30,
            )
        assert agent.stop() == 0
        assert relay.terminate() == 0
    finally:
        agent.ensure_stopped()
        relay.ensure_stopped()
        for rx in both:
            await rx.stop()
    rows = query(
        db,
        "SELECT d.destination, e.idempotency_key, a.number, a.status, a.outcome,"
        " a.error LIKE 'timed out%' FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
        " JOIN events e ON e.id = d.event_id ORDER BY e.idempotency_key, a.number",
    )
    by = {name: [r[1:] for r in rows if r[0] == name] for name in ("internal", "direct")}
    assert by["internal"] == by["direct"]
    assert [r[2:4] for r in by["direct"]] == [
        (503, "retry"),
        (200, "delivered"),  # 503 then 200
        (400, "dead"),  # 400: permanent
        (None, "retry"),
        (None, "retry"),
        (None, "dead"),  # timeouts, then given up
    ]
    # What the console shows of each response is the same too: body and header names.
    kept = query(
        db,
        "SELECT d.destination, a.response_excerpt, a.response_headers FROM attempts a"
        " JOIN deliveries d ON d.id = a.delivery_id ORDER BY d.event_id, a.number",
    )
    seen = {
        name: [(r[1], sorted(n for n, _ in json.loads(r[2] or "[]"))) for r in kept if r[0] == name]
        for name in ("internal", "direct")
    }
    assert seen["internal"] == seen["direct"]
    assert seen["direct"][0] == ("answer 503", ["Content-Length", "Content-Type", "Date", "Server"])


async def test_two_agents_one_killed_keep_order_per_key(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    receiver.default = "slow"
    ordered = 'ordering = "key"\nordering_key = "json:/customer"'
    db = tmp_path / "relay.db"
    relay = RelayProcess(relay_config(tmp_path, receiver.url, destination=ordered)).start()
    allow = f'"{receiver.url}"'
    one = AgentProcess(agent_config(tmp_path, relay_url(relay), allow, name="one"))
    two = AgentProcess(agent_config(tmp_path, relay_url(relay), allow, name="two"))
    try:
        one.start()
        two.start()
        async with aiohttp.ClientSession() as client:
            for n in range(60):
                body = json.dumps({"customer": f"c{n % 6}", "n": n}).encode()
                assert (await post(client, relay.port, body, key=f"o{n}"))[0] == 200
        await wait_for(lambda: len(receiver.received) >= 12, timeout=30)
        one.kill()
        await wait_for(lambda: _states(db) == {"delivered": 60}, timeout=60)
        assert _leased(db) == 0
        assert two.stop() == 0
        assert relay.terminate() == 0
    finally:
        one.ensure_stopped()
        two.ensure_stopped()
        relay.ensure_stopped()
        await receiver.stop()
    per_key: dict[str, list[int]] = {}
    for r in receiver.received:
        body = json.loads(r.body)
        seq = per_key.setdefault(body["customer"], [])
        if not seq or seq[-1] != body["n"]:  # a repeat of the one in flight at the kill
            seq.append(body["n"])
    assert all(seq == sorted(seq) for seq in per_key.values()), per_key
    assert sorted(n for seq in per_key.values() for n in seq) == list(range(60))


async def test_the_agent_refuses_targets_outside_allow_and_the_relay_refuses_bad_tokens(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "relay.db"
    relay = RelayProcess(relay_config(tmp_path, receiver.url)).start()
    fine = AgentProcess(
        agent_config(tmp_path, relay_url(relay), '"http://127.0.0.1:1/", "http://10.0.0.0/8"')
    )
    wrong = AgentProcess(
        agent_config(tmp_path, relay_url(relay), f'"{receiver.url}"', token="guess", name="w")
    )
    try:
        fine.start()
        await _post_many(relay.port, ["x1"])
        await wait_for(lambda: _states(db) == {"dead": 1}, timeout=20)
        wrong.start(wait=False)
        relay_log = relay.log
        deadline = time.monotonic() + 15
        while "agent.refused" not in relay_log.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert fine.stop() == 0
        assert wrong.stop() == 0
        assert relay.terminate() == 0
    finally:
        fine.ensure_stopped()
        wrong.ensure_stopped()
        relay.ensure_stopped()
    assert receiver.received == []  # never called
    [(attempts, error)] = query(db, "SELECT attempts, last_error FROM deliveries")
    assert attempts == 1  # permanent: not retried
    assert "allow list" in error
    text = relay.log.read_text()
    assert "agent.refused" in text
    assert 'reason="wrong token"' in text
    assert "guess" not in text  # never logged


async def test_relay_agent_check(tmp_path: Path, receiver: Receiver) -> None:
    from tests.process import run_cli

    relay = RelayProcess(relay_config(tmp_path, receiver.url)).start()
    try:
        good = agent_config(tmp_path, relay_url(relay), f'"{receiver.url}"')
        bad = agent_config(
            tmp_path, relay_url(relay), f'"{receiver.url}"', token="guess", name="bad"
        )
        ok = await asyncio.to_thread(run_cli, "agent", "--config", str(good), "--check")
        refused = await asyncio.to_thread(run_cli, "agent", "--config", str(bad), "--check")
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    assert ok.returncode == 0, ok.stderr
    assert "connected to" in ok.stdout
    assert refused.returncode == 1
    assert "refused this agent (401)" in refused.stderr
    assert "guess" not in refused.stderr


def test_the_agents_example_file_documents_every_key(tmp_path: Path) -> None:
    import os
    import tomllib

    from relay.agent import AgentConfig, TargetTls, load_agent_config

    root = Path(__file__).resolve().parent.parent
    example = root / "packaging" / "agent.example.toml"
    os.environ["OFFICE_AGENT_TOKEN"] = "t"
    try:
        settings = load_agent_config(example)
    finally:
        del os.environ["OFFICE_AGENT_TOKEN"]
    assert settings.agent.name == "office"
    text = example.read_text()
    documented = set(tomllib.loads(text)["agent"])
    commented = {
        line.split("=")[0].strip("# ").strip()
        for line in text.splitlines()
        if line.startswith("# ") and "=" in line
    }
    assert set(AgentConfig.model_fields) <= documented | commented | {"targets"}
    assert set(TargetTls.model_fields) <= commented


async def test_a_silent_agents_deliveries_die_within_max_attempts_with_a_small_lease_margin(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Issue 28: with lease_margin = 1s, the "no result from the agent" outcome came 5 s
    after the timeout, after the lease had ended; fencing dropped it, the delivery went out
    again uncounted, and none ever died. Now the wait ends within the lease."""
    from tests.agents import TOKEN

    config = relay_config(tmp_path, receiver.url)
    text = config.read_text().replace("[storage]\n", '[storage]\nlease_margin = "1s"\n')
    text = text.replace('timeout = "2s"', 'timeout = "1s"')
    config.write_text(text.replace('cap = "200ms"', 'cap = "200ms"\nmax_attempts = 3'))
    db = tmp_path / "relay.db"
    relay = RelayProcess(config).start()
    delivers = 0
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"{relay_url(relay)}/agent/connect?group=office",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as ws,
        ):
            await ws.send_json({"type": "hello", "credits": 5})
            await _post_many(relay.port, ["s1", "s2"])

            async def listen() -> None:  # take deliveries, never answer
                nonlocal delivers
                async for message in ws:
                    if json.loads(message.data)["type"] == "deliver":
                        delivers += 1

            listening = asyncio.create_task(listen())
            await wait_for(lambda: _states(db) == {"dead": 2}, timeout=30)
            listening.cancel()
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    rows = query(db, "SELECT attempts, last_error FROM deliveries")
    assert [attempts for attempts, _ in rows] == [3, 3]
    assert all("no result from the agent" in error for _, error in rows), rows
    assert delivers == 6
    assert query(db, "SELECT count(*) FROM attempts")[0][0] == 6
