"""The agent protocol and its endpoint, fuzzed (issue 28): an authenticated agent that
answers deliveries with 10,000 mutated frames, and 10,000 mutated requests to
``/agent/connect``.

Before: a result with ``started_at`` 1e308, ``headers`` that were not JSON, ``status``
2**70, ``duration_ms`` NaN or an excerpt with a NUL was stored as it came (the event page
then answered 500 for good) or could not be stored (the lease expired, the delivery went
out again and the attempt was not counted); a hello that was a list, a string or deep JSON
dropped the connection with a traceback; a non-UTF-8 bearer token answered 500. Now: no
5xx, no traceback, every delivery ends within ``max_attempts``, every console page 200.

The relay runs as its own process; the agent is the test, speaking the protocol itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.agents import TOKEN, relay_config
from tests.helpers import Receiver, post, query, wait_for
from tests.process import RelayProcess
from tests.reliability.test_fuzz_http import ODD, _run

FRAMES = int(os.environ.get("RELAY_FUZZ_FRAMES", "10000"))
REQUESTS = int(os.environ.get("RELAY_FUZZ_REQUESTS", "10000"))
SEED = int(os.environ.get("RELAY_FUZZ_SEED", "20261207"))
EVENTS = 1000
MAX_ATTEMPTS = 5
ADMIN = "fuzz-admin-token"

ODD_VALUES: list[Any] = [
    2**70,
    -(2**70),
    1e308,
    -1e18,
    -1,
    0,
    1.5,
    "200",
    True,
    None,
    [],
    {},
    [1, 2],
    {"a": 1},
    "x" * 70_000,
    "a\x00b",
    "é☃",
    "",
]
RAW_ODD = [  # JSON text that json.dumps would not write
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    '"\\ud800"',
    '"a\\udfffb"',
    '"\\u0000"',
    "[" * 5000 + "]" * 5000,
]
FIELDS = [
    "type",
    "lease",
    "status",
    "error",
    "excerpt",
    "headers",
    "retry_after",
    "duration_ms",
    "started_at",
    "permanent",
]


def _valid(lease: str, rng: random.Random) -> dict[str, Any]:
    return {
        "type": "result",
        "lease": lease,
        "status": rng.choice([200, 200, 500, 422, 503, None]),
        "error": None,
        "excerpt": "ok",
        "headers": json.dumps([["Content-Type", "text/plain"], ["Set-Cookie", "s=1"]]),
        "retry_after": None,
        "duration_ms": 3.5,
        "started_at": None,
        "permanent": False,
    }


def mutated_result(lease: str, rng: random.Random) -> str:
    """A result for ``lease`` with one to three fields changed, removed or made odd."""
    frame = _valid(lease, rng)
    raw: dict[str, str] = {}
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(FIELDS)
        kind = rng.random()
        if kind < 0.15:
            frame.pop(field, None)
        elif kind < 0.35:
            raw[field] = rng.choice(RAW_ODD)
        elif kind < 0.45 and field == "headers":
            frame[field] = rng.choice(["not json", "[1, 2]", '[["a"]]', '{"a": "b"}', "[" * 3000])
        elif kind < 0.55 and field == "lease":
            frame[field] = rng.choice(["1:1", "99999999999999999999:1", "x", lease + "0"])
        else:
            frame[field] = rng.choice(ODD_VALUES)
    text = json.dumps({k: v for k, v in frame.items() if k not in raw})
    for field, value in raw.items():
        text = text[:-1] + f', "{field}": {value}}}'
    return text


def garbage(rng: random.Random) -> str | bytes:
    """A frame that is not a result at all."""
    return rng.choice(
        [
            "[]",
            '"hello"',
            "1e400",
            "null",
            "{",
            "[" * 10_000 + "]" * 10_000,
            '{"type": "hello", "credits": 5}',
            '{"type": "deliver"}',
            '{"type": 7}',
            '{"type": "result"}',
            "\x00",
            b"\x00\x01binary",
            json.dumps({"type": "result", "lease": "1:1", "status": 200}),
            "x" * 100_000,
        ]
    )


def mutated_hello(rng: random.Random) -> str | bytes:
    return rng.choice(
        [
            "[]",
            '"hello"',
            "1e400",
            "[" * 10_000 + "]" * 10_000,
            '{"type": "hello", "credits": 1e400}',
            '{"type": "hello", "credits": "10"}',
            '{"type": "hello", "credits": 0}',
            '{"type": "hello", "credits": 1001}',
            '{"type": "hello", "credits": 2, "version": "\\u0000"}',
            '{"type": "result"}',
            b"\x00binary",
            "{",
        ]
    )


class Agent:
    """The test's own agent: answers every delivery with a mutated result (or, one time in
    ten, not at all), and sends garbage frames in between, until ``FRAMES`` were sent; then
    it answers 200 to everything so that every delivery can end."""

    def __init__(self, port: int, rng: random.Random) -> None:
        self.url = f"http://127.0.0.1:{port}/agent/connect?group=office"
        self.rng = rng
        self.sent = 0
        self.errors = 0  # protocol errors relay answered with
        self.deliveries = 0

    async def run(self, session: aiohttp.ClientSession, done: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while not done.is_set():
            async with session.ws_connect(self.url, headers=headers) as ws:
                await ws.send_json({"type": "hello", "credits": 20, "version": "fuzz"})
                await self._serve(ws, done)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, done: asyncio.Event) -> None:
        spewing = asyncio.create_task(self._spew(ws))
        try:
            await self._answer(ws, done)
        finally:
            spewing.cancel()

    async def _spew(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Garbage between the results, until the budget of frames is spent."""
        while self.sent < FRAMES and not ws.closed:
            await self._send(ws, garbage(self.rng))
            await asyncio.sleep(0.002)

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse, done: asyncio.Event) -> None:
        while not done.is_set():
            try:
                message = await ws.receive(timeout=0.5)
            except TimeoutError:
                continue
            if message.type is not aiohttp.WSMsgType.TEXT:
                return  # closed: connect again
            data = json.loads(message.data)
            if data["type"] == "error":
                self.errors += 1
                continue
            if data["type"] != "deliver":
                continue
            self.deliveries += 1
            assert base64.b64decode(data["body"])
            lease = data["lease"]
            if self.sent >= FRAMES:
                answer = _valid(lease, self.rng) | {"status": 200}
                await self._send(ws, json.dumps(answer))
                continue
            for _ in range(self.rng.choice([0, 0, 1, 2])):
                await self._send(ws, garbage(self.rng))
            if self.rng.random() < 0.1:
                continue  # silent: the attempt ends as "no result from the agent"
            await self._send(ws, mutated_result(lease, self.rng))

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, frame: str | bytes) -> None:
        if ws.closed:
            return
        self.sent += 1
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)


async def _hellos(port: int, rng: random.Random, count: int) -> Counter[str]:
    """Connections that say a malformed hello: each is closed with a reason, none crash."""
    closes: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.ws_connect(
                f"http://127.0.0.1:{port}/agent/connect?group=office",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as ws:
                hello = mutated_hello(rng)
                if isinstance(hello, bytes):
                    await ws.send_bytes(hello)
                else:
                    await ws.send_str(hello)
                message = await ws.receive(timeout=10)
                closes[f"{message.type.name} {ws.close_code}"] += 1
    return closes


async def test_mutated_agent_frames_are_refused_and_attempts_stay_bounded(
    tmp_path: Path, receiver: Receiver
) -> None:
    rng = random.Random(SEED)
    config = relay_config(
        tmp_path,
        receiver.url,
        destination='timeout = "1s"\nkeep_response = 65536',
        extra=f'[admin]\nlisten = "127.0.0.1:0"\ntoken = "{ADMIN}"\n',
    )
    # A small lease margin: the "no result" outcome must still land within the lease.
    text = config.read_text().replace("[storage]\n", '[storage]\nlease_margin = "2s"\n')
    text = text.replace('timeout = "2s"\n', "")
    # A mutated result may carry a valid Retry-After ("200"), which relay honours up to
    # retry_after_max: bounded here so that every delivery can end within the test's wait.
    retry = f'cap = "200ms"\nmax_attempts = {MAX_ATTEMPTS}\nretry_after_max = "1s"'
    config.write_text(text.replace('cap = "200ms"', retry))
    relay = RelayProcess(config).start(timeout=20)
    try:
        admin = _admin_port(relay)
        closes = await _hellos(relay.port, rng, 200)
        assert set(closes) <= {"CLOSE 1008", "CLOSED 1008"}, closes
        agent = Agent(relay.port, rng)
        done = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            serving = asyncio.create_task(agent.run(session, done))
            for i in range(EVENTS):
                status, _, _ = await post(session, relay.port, b'{"n": %d}' % i, key=f"k{i}")
                assert status == 200
            await wait_for(lambda: agent.sent >= FRAMES, timeout=240, step=0.2)

            def finished() -> bool:
                pending = query(relay.config.parent / "relay.db", _PENDING)[0][0]
                return pending == 0

            await wait_for(finished, timeout=60, step=0.2)
            done.set()
            await serving
            pages = await _console_pages(session, admin, relay.config.parent / "relay.db")
        assert relay.proc is not None
        assert relay.proc.poll() is None, "relay died"
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    db = relay.config.parent / "relay.db"
    log = relay.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    over = query(db, "SELECT id, attempts FROM deliveries WHERE attempts > ?", (MAX_ATTEMPTS,))
    assert not over, over[:10]
    counted = query(
        db,
        "SELECT d.id FROM deliveries d WHERE (SELECT count(*) FROM attempts a"
        " WHERE a.delivery_id = d.id) > ?",
        (MAX_ATTEMPTS,),
    )
    assert not counted, counted[:10]
    states = dict(query(db, "SELECT state, count(*) FROM deliveries GROUP BY state"))
    assert states.get("dead", 0) > 0, states
    assert states.get("delivered", 0) > 0, states
    assert agent.errors > FRAMES // 10, (agent.errors, agent.sent)
    assert all(status == 200 for status in pages.values()), {
        p: s for p, s in pages.items() if s != 200
    }
    print(
        f"{agent.sent} frames, {agent.deliveries} deliveries, {agent.errors} protocol errors;"
        f" {states}; hellos {dict(closes)}; {len(pages)} console pages 200"
    )


_PENDING = "SELECT count(*) FROM deliveries WHERE state = 'pending'"


def _admin_port(relay: RelayProcess) -> int:
    found = re.search(r"msg=admin\.ready listen=\S+:(\d+)", relay.log.read_text())
    assert found is not None, relay.log.read_text()
    return int(found.group(1))


async def _console_pages(session: aiohttp.ClientSession, admin: int, db: Path) -> dict[str, int]:
    """Every console page and every event's page, signed in: path -> status."""
    base = f"http://127.0.0.1:{admin}"
    async with session.post(base + "/ui/login", data={"token": ADMIN}, allow_redirects=False) as r:
        assert r.status == 303
        cookie = re.search(r"relay_session=([^;]+)", r.headers["Set-Cookie"])
        assert cookie is not None
    paths = ["/ui/", "/ui/events", "/ui/dead", "/ui/destinations", "/ui/rejections"]
    paths += ["/ui/audit", "/ui/alerts", "/ui/tail"]
    paths += [f"/ui/events/{row[0]}" for row in query(db, "SELECT id FROM events")]
    paths += [f"/api/events/{row[0]}" for row in query(db, "SELECT id FROM events LIMIT 50")]
    pages = {}
    headers = {"Authorization": f"Bearer {ADMIN}"}
    session_cookie = {"Cookie": f"relay_session={cookie.group(1)}"}
    for path in paths:
        extra = headers if path.startswith("/api/") else session_cookie
        async with session.get(base + path, headers=extra, allow_redirects=False) as r:
            await r.read()
            pages[path] = r.status
    return pages


def _connect_request(rng: random.Random) -> bytes:
    """A WebSocket upgrade to /agent/connect with one to three odd parts."""
    group = b"office"
    token = TOKEN.encode()
    scheme = b"Bearer"
    headers = {
        b"Host": b"relay",
        b"Upgrade": b"websocket",
        b"Connection": b"Upgrade",
        b"Sec-WebSocket-Key": b"dGhlIHNhbXBsZSBub25jZQ==",
        b"Sec-WebSocket-Version": b"13",
    }
    path = b"/agent/connect?group="
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(8)
        if choice == 0:
            token = rng.choice([b"caf\xe9", b"", b"x" * 5000, TOKEN.encode() + rng.choice(ODD)])
        elif choice == 1:
            group = rng.choice([b"", b"nope", b"off%ffice", b"\xe9", b"o" * 3000, b"office&x=1"])
        elif choice == 2:
            scheme = rng.choice([b"Basic", b"bearer", b"", b"Bearer\xe9"])
        elif choice == 3:
            name = rng.choice(list(headers))
            headers[name] = rng.choice([b"", b"x", b"\xff", b"99"])
        elif choice == 4:
            del headers[rng.choice(list(headers))]
        elif choice == 5:
            headers[b"X-Relay-Agent-Group"] = rng.choice([b"office", b"\xff", b""])
            path = b"/agent/connect"
        elif choice == 6:
            path = (
                rng.choice(
                    [
                        b"/agent/connect",
                        b"/agent/connect?group=office&group=x",
                        b"/agent/%ff",
                        b"/agent/connect/",
                    ]
                )
                + b"&group="
            )
        else:
            headers[b"Authorization2"] = b"x"
    head = b"GET " + path + group + b" HTTP/1.1\r\n"
    headers[b"Authorization"] = scheme + b" " + token
    head += b"".join(k + b": " + v + b"\r\n" for k, v in headers.items())
    return head + b"Connection: close\r\n\r\n"


async def _status(port: int, raw: bytes) -> int | None:
    """Send one request and read its status line (101 included: an upgrade that worked);
    None if the server closed unanswered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(15):
            line = await reader.readline()
        return int(line.split(b" ", 2)[1]) if line.startswith(b"HTTP/1.") else None
    except ConnectionError:
        return None
    finally:
        writer.close()


def test_mutated_requests_to_agent_connect_never_get_500(tmp_path: Path) -> None:
    config = relay_config(tmp_path, "http://127.0.0.1:9/")
    rng = random.Random(SEED)
    requests = [_connect_request(rng) for _ in range(REQUESTS)]
    relay = RelayProcess(config).start()
    try:
        classes, five = asyncio.run(_run(relay.port, requests, _status))
        assert relay.proc is not None
        assert relay.proc.poll() is None, "relay died"
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    summary = " / ".join(f"{classes[k]} x {k}" for k in sorted(classes))
    print(f"{REQUESTS} mutated /agent/connect requests (seed {SEED}): {summary}")
    assert not five, f"{len(five)} x 5xx; {summary}; first: {five[0][:400]!r}"
    log = relay.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    refused = [line for line in log.splitlines() if "msg=agent.refused" in line]
    assert len(refused) < 20, f"{len(refused)} agent.refused lines"
