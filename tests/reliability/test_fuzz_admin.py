"""10,000 mutated requests to the admin API, with its token (issue 28): never a 5xx, never a
traceback, and every console page still 200 afterwards.

Each request starts from a valid call of one endpoint (reads with filters and pages, replay
by id and by filter, catch-up, backup, pause and resume) and gets one to three mutations: odd bytes
in a query value or in a header the API keeps (Idempotency-Key, X-Relay-Actor), a JSON body
with the wrong types, out-of-range numbers, lone surrogates, NUL, deep nesting, unknown keys
or cut short. Before: replay answered 500 to ``delivery_id`` 2**70, a list or object where a
name belongs and deep JSON; backup to a missing folder 500; a non-UTF-8 Idempotency-Key a
400 with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.catchup.fakes import FakeStripe
from tests.helpers import Receiver, post, query, wait_for
from tests.process import RelayProcess, write_config
from tests.reliability.test_fuzz_http import JSON_TEXT, ODD, _run

REQUESTS = int(os.environ.get("RELAY_FUZZ_REQUESTS", "10000"))
SEED = int(os.environ.get("RELAY_FUZZ_SEED", "20261208"))
TOKEN = "fuzz-admin-token"

ODD_JSON: list[str] = [
    *JSON_TEXT,
    str(2**70),
    "-1",
    "0",
    "1.5",
    '"false"',
    '"no"',
    "false",
    "[]",
    '["app"]',
    '{"a": {"b": 1}}',
    "[" * 10_000 + "]" * 10_000,
    '"' + "y" * 5000 + '"',
]
QUERY_VALUES = [b"2h", b"x", b"%ff", b"\xff", b"caf\xe9", b"-1", b"99999999999", b"", b"*"]
QUERY_VALUES += [b"2026-12-07T06:27:00Z", b"%00", b"a" * 3000, b"1e400", b"invoice.*"]


class Call:
    """An admin API call under construction, as bytes."""

    def __init__(self, rng: random.Random, folder: Path, event_ids: list[str]) -> None:
        self.rng = rng
        self.headers: list[tuple[bytes, bytes]] = [
            (b"Host", b"relay"),
            (b"Authorization", b"Bearer " + TOKEN.encode()),
        ]
        self.method, self.path, self.query, self.body = b"GET", b"/api/events", {}, None
        kind = rng.randrange(11)
        if kind < 3:
            self.path = rng.choice([b"/api/events", b"/api/dead", b"/api/rejections"])
            self.path = rng.choice([self.path, b"/api/audit"])
            self.query = {b"source": b"demo", b"type": b"invoice.*", b"since": b"2h"}
            self.query |= {b"limit": b"20", b"q": b"paid", b"key": b"k1", b"error": b"HTTP"}
        elif kind < 4:
            self.path = b"/api/events/" + rng.choice([*event_ids, "nope"]).encode()
        elif kind < 8:
            self.method, self.path = b"POST", b"/api/replay"
            self.headers.append((b"Idempotency-Key", b"fuzz-%d" % rng.randrange(10**9)))
            self.body = rng.choice(
                [
                    {"event_id": rng.choice(event_ids), "dry_run": True},
                    {"delivery_id": rng.randint(1, 50)},
                    {"filter": {"source": "demo", "since": "1h"}, "dry_run": True},
                    {"filter": {"type": "invoice.*"}, "state": "delivered", "dry_run": True},
                    {"filter": {}, "state": "any", "destination": "app", "dry_run": True},
                ]
            )
        elif kind < 9:
            self.method = b"POST"
            name = rng.choice([b"app", b"nope", b"%ff", b"\xe9"])
            self.path = b"/api/destinations/" + name + rng.choice([b"/pause", b"/resume"])
        elif kind < 10:
            self.method, self.path = b"POST", b"/api/catch-up"
            self.body = rng.choice(
                [
                    {"source": "stripe", "since": "1h", "dry_run": True},
                    {"source": "stripe", "since": "2026-12-07T06:27:00Z", "until": "10m"},
                    {"source": "demo", "since": "2h"},
                ]
            )
        else:
            self.method, self.path = b"POST", b"/api/backup"
            n = rng.randrange(10**9)
            self.body = {"path": str(folder / f"copy-{n}.db")}
        self.raw_body: bytes | None = None

    def encode(self) -> bytes:
        target = self.path
        if self.query:
            target += b"?" + b"&".join(k + b"=" + v for k, v in self.query.items())
        body = self.raw_body
        if body is None:
            body = json.dumps(self.body).encode() if self.body is not None else b""
        head = b"%s %s HTTP/1.1\r\n" % (self.method, target)
        head += b"".join(k + b": " + v + b"\r\n" for k, v in self.headers)
        if self.method == b"POST":
            head += b"Content-Type: application/json\r\n"
        return head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body


def _odd_query(c: Call) -> None:
    name = c.rng.choice([b"source", b"type", b"since", b"until", b"limit", b"q", b"key"])
    c.query[name] = c.rng.choice(QUERY_VALUES)


def _odd_header(c: Call) -> None:
    name = c.rng.choice([b"Idempotency-Key", b"X-Relay-Actor", b"Content-Type"])
    c.headers.append((name, b"v" + c.rng.choice(ODD) + b"w"))


def _odd_field(c: Call) -> None:
    if not isinstance(c.body, dict):
        return
    field = c.rng.choice(
        [
            *("event_id", "delivery_id", "filter", "destination", "state", "again", "dry_run"),
            *("source", "since", "until"),
        ]
    )
    field = c.rng.choice([field, "path", "surprise"])
    value = c.rng.choice(ODD_JSON)
    text = json.dumps({k: v for k, v in c.body.items() if k != field})
    c.raw_body = (text[:-1] + (", " if len(text) > 2 else "") + f'"{field}": {value}}}').encode()


def _odd_filter(c: Call) -> None:
    if not isinstance(c.body, dict) or "filter" not in c.body:
        return
    field = c.rng.choice(["source", "type", "since", "until", "error", "key", "text", "state"])
    value = c.rng.choice(ODD_JSON)
    rest = {k: v for k, v in c.body.items() if k != "filter"}
    c.raw_body = (json.dumps(rest)[:-1] + f', "filter": {{"{field}": {value}}}}}').encode()


def _odd_body(c: Call) -> None:
    c.raw_body = c.rng.choice(
        [b"", b"{", b"[]", b'"x"', b"null", b"\xff\xfe", b"{" * 20_000, b'{"path": "/tmp/\x00"}']
    )


def _odd_backup(c: Call) -> None:
    if c.path == b"/api/backup":
        c.body = {
            "path": c.rng.choice(
                ["/nonexistent-folder/x.db", "/" + "x" * 5000, "", "/proc/version", "/"]
            )
        }


MUTATIONS: list[Callable[[Call], None]] = [
    _odd_query,
    _odd_query,
    _odd_header,
    _odd_field,
    _odd_field,
    _odd_filter,
    _odd_body,
    _odd_backup,
]


def mutated(rng: random.Random, folder: Path, event_ids: list[str]) -> bytes:
    call = Call(rng, folder, event_ids)
    for mutation in rng.sample(MUTATIONS, rng.randint(1, 3)):
        mutation(call)
    return call.encode()


def test_mutated_admin_calls_never_get_500(tmp_path: Path) -> None:
    asyncio.run(_fuzz(tmp_path))


async def _fuzz(tmp_path: Path) -> None:
    receiver = await Receiver(default=422).start()  # dead letters to replay
    stripe = await FakeStripe().start()  # what catch-up asks (no events: it answers 200)
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", receiver.url)
    catch_up = (
        '[[sources]]\nname = "stripe"\nverify = "stripe"\nsecret = "whsec_x"\n'
        f'[sources.catch_up]\napi_key = "{stripe.key}"\nbase_url = "{stripe.url}"\n'
        "automatic = false\n"
    )
    text = config.read_text().replace("[[destinations]]", catch_up + "[[destinations]]", 1)
    config.write_text(text + f'[admin]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\n')
    (tmp_path / "copies").mkdir()
    workdir = tmp_path / "workdir"  # relay's working directory: nothing may be written there
    workdir.mkdir()
    relay = RelayProcess(config, cwd=workdir).start()
    try:
        found = re.search(r"msg=admin\.ready listen=\S+:(\d+)", relay.log.read_text())
        assert found is not None
        admin = int(found.group(1))
        async with aiohttp.ClientSession() as session:
            for i in range(30):
                body = b'{"type": "invoice.paid", "n": %d}' % i
                assert (await post(session, relay.port, body, key=f"k{i}"))[0] == 200
        db = tmp_path / "relay.db"
        await wait_for(
            lambda: query(db, "SELECT count(*) FROM deliveries WHERE state = 'dead'") == [(30,)],
            timeout=30,
        )
        event_ids = [row[0] for row in query(db, "SELECT id FROM events")]
        rng = random.Random(SEED)
        calls = [mutated(rng, tmp_path / "copies", event_ids) for _ in range(REQUESTS)]
        classes, five = await _run(admin, calls)
        pages = await _pages(admin, event_ids)
        assert relay.proc is not None
        assert relay.proc.poll() is None, "relay died"
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
        await receiver.stop()
        await stripe.stop()
    summary = " / ".join(f"{classes[k]} x {k}" for k in sorted(classes))
    print(f"{REQUESTS} mutated admin calls (seed {SEED}): {summary}")
    assert not five, f"{len(five)} x 5xx; {summary}; first: {five[0][:600]!r}"
    assert sum(classes.values()) == REQUESTS
    assert classes["2xx"] > REQUESTS // 10, summary
    log = relay.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert all(status == 200 for status in pages.values()), pages
    assert stripe.requests, "no catch-up reached the provider"
    assert not list(workdir.iterdir()), "a call wrote into relay's working directory"


async def _pages(admin: int, event_ids: list[str]) -> dict[str, int]:
    base = f"http://127.0.0.1:{admin}"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            base + "/ui/login", data={"token": TOKEN}, allow_redirects=False
        ) as r:
            cookie = re.search(r"relay_session=([^;]+)", r.headers["Set-Cookie"])
            assert cookie is not None
        headers = {"Cookie": f"relay_session={cookie.group(1)}"}
        paths = ["/ui/", "/ui/events", "/ui/dead", "/ui/destinations", "/ui/rejections"]
        paths += ["/ui/audit", "/ui/alerts", *(f"/ui/events/{e}" for e in event_ids)]
        pages: dict[str, Any] = {}
        for path in paths:
            async with session.get(base + path, headers=headers, allow_redirects=False) as r:
                await r.read()
                pages[path] = r.status
        return pages
