"""10,000 mutated raw requests at the real relay: never a 500, every answer read.

Each request starts from a valid, signed webhook and gets one to three mutations: odd bytes
in a header relay stores or extracts from, a lying or doubled Content-Length, a body that is
not what its Content-Encoding says, JSON with lone surrogates, a broken chunked body, odd
paths and methods. Half of them are signed again after the mutation, so they get past the
signature check and reach the store. Every answer is read (the connection is never
half-closed first, which would let the server close without answering) and counted by class.

The relay runs as its own process, so a crash or a traceback in its log fails the test.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import os
import random
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.helpers import query
from tests.process import RelayProcess, write_config

REQUESTS = int(os.environ.get("RELAY_FUZZ_REQUESTS", "10000"))
SEED = int(os.environ.get("RELAY_FUZZ_SEED", "20261129"))
WORKERS = 24
SECRET = b"test-secret"

# Extra sources and a keyed, ordered destination, so extraction of every kind is exercised.
EXTRA = """
[[sources]]
name = "tok"
verify = "token"
secret = "fuzz-token-secret"
idempotency_key = "header:X-Request-Id"
event_type = "header:X-Event-Type"
[[sources]]
name = "form"
verify = "hmac"
secret = "test-secret"
prefix = "sha256="
idempotency_key = "form:MessageSid"
event_type = "form:MessageStatus"
[[destinations]]
name = "ordered"
url = "http://127.0.0.1:9/"
ordering = "key"
ordering_key = "json:/customer"
[[routes]]
source = "demo"
destinations = ["ordered"]
[[routes]]
source = "form"
destinations = ["app"]
"""

ODD = [
    b"\xe9\xff",
    b"\xff",
    b"caf\xe9",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # a UTF-8 encoded surrogate: not valid UTF-8
    b"\x80" * 20,
    b"\xf0\x90\x80",
    b"\t",
    b" ",
    b"\x00",
    b"\x7f",
    "é".encode(),
    "☃".encode(),
]
JSON_TEXT = [
    '"\\ud800"',
    '"\\udfff"',
    '"a\\ud800b"',
    '"\\u0000"',
    '"\\udce9"',
    '"' + "x" * 2000 + '"',
    "1e999",
    "-0",
    "12345678901234567890123456789",
    "true",
    "null",
    "[1]",
    '{"a": 1}',
    '"é"',
]
PATHS = [b"/in/demo", b"/in/tok", b"/in/form", b"/in/demo?x=\xff", b"/in/%ff", b"//in/demo"]
PATHS += [b"/in/demo/../demo", b"/in/nope", b"/healthz", b"/readyz", b"/in/", b"*"]


def _sign(body: bytes) -> bytes:
    return b"sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest().encode()


class Request:
    """A request under construction: method, path, header pairs and a body, as bytes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.method = b"POST"
        self.path = b"/in/demo"
        n = rng.randrange(10**9)
        self.body = b'{"id": "evt_%d", "type": "invoice.paid", "customer": "c%d"}' % (n, n % 7)
        self.headers: list[tuple[bytes, bytes]] = [
            (b"Host", b"relay"),
            (b"Content-Type", b"application/json"),
            (b"X-Request-Id", b"key-%d" % n),
            (b"User-Agent", b"fuzz/1"),
        ]
        self.length: bytes | None = None  # None: the true length
        self.chunked: bytes | None = None  # raw chunked body in place of the plain one
        self.resign = rng.random() < 0.5

    def header(self, name: bytes, value: bytes) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))

    def encode(self) -> bytes:
        headers = list(self.headers)
        body = self.body if self.chunked is None else self.chunked
        if self.resign or not any(k.lower() == b"x-signature" for k, _ in headers):
            headers.append((b"X-Signature", _sign(self.body)))
        if self.path.startswith(b"/in/tok"):
            headers.append((b"Authorization", b"Bearer fuzz-token-secret"))
        if self.chunked is not None:
            headers.append((b"Transfer-Encoding", b"chunked"))
        else:
            length = self.length if self.length is not None else b"%d" % len(body)
            headers.append((b"Content-Length", length))
        head = b"%s %s HTTP/1.1\r\n" % (self.method, self.path)
        head += b"".join(k + b": " + v + b"\r\n" for k, v in headers)
        return head + b"Connection: close\r\n\r\n" + body


def _odd_header(r: Request) -> None:
    name = r.rng.choice(
        [b"X-Request-Id", b"Content-Type", b"X-Event-Type", b"User-Agent", b"X-Other", b"Expect"]
    )
    r.header(name, b"v" + r.rng.choice(ODD) + b"w")


def _odd_json(r: Request) -> None:
    field = r.rng.choice(["type", "id", "customer"])
    value = r.rng.choice(JSON_TEXT)
    r.body = f'{{"{field}": {value}, "customer": "c1"}}'.encode()


def _encoding(r: Request) -> None:
    coding = r.rng.choice([b"gzip", b"deflate", b"br", b"xyz", b"gzip, gzip", b"identity", b""])
    r.header(b"Content-Encoding", coding)
    kind = r.rng.random()
    if kind < 0.4:
        r.body = b"not-gzip!" + r.body[:5]
    elif kind < 0.7 and coding == b"gzip":
        r.body = gzip.compress(r.body)[:-4]  # truncated: a bad checksum
    elif coding == b"deflate":
        r.body = zlib.compress(r.body)


def _length(r: Request) -> None:
    r.length = r.rng.choice([b"0", b"-1", b"1", b"abc", b"99999999999999999999", b"3, 3"])
    if r.length in (b"1", b"0"):
        r.body = r.body[: int(r.length)]


def _chunked(r: Request) -> None:
    r.chunked = r.rng.choice(
        [
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(r.body), r.body),
            b"zz\r\nxx\r\n0\r\n\r\n",
            b"5\r\nabc\r\n0\r\n\r\n",
            b"%x\r\n%s\r\n0\r\nX-Trailer: \xff\r\n\r\n" % (len(r.body), r.body),
        ]
    )


def _body_bytes(r: Request) -> None:
    data = bytearray(r.body)
    for _ in range(r.rng.randint(1, 8)):
        if data:
            data[r.rng.randrange(len(data))] = r.rng.randrange(256)
    r.body = bytes(data)


def _path(r: Request) -> None:
    r.path = r.rng.choice(PATHS)
    if r.path == b"/in/form":
        sid = r.rng.choice([b"SM1", b"SM%d" % r.rng.randrange(10**6), b"%ff%fe", b"\xe9"])
        r.body = b"MessageSid=" + sid + b"&MessageStatus=" + r.rng.choice([b"sent", b"%ed%a0"])
        r.header(b"Content-Type", b"application/x-www-form-urlencoded")
    r.method = r.rng.choice([b"POST", b"POST", b"GET", b"PUT", b"OPTIONS", b"P\xffST"])


def _duplicate(r: Request) -> None:
    name = r.rng.choice([b"X-Request-Id", b"Content-Type", b"X-Signature", b"Content-Encoding"])
    r.headers.append((name, b"second" + r.rng.choice(ODD)))


def _expect(r: Request) -> None:
    r.header(b"Expect", r.rng.choice([b"100-continue", b"100-continu\xe9", b"x", b""]))


MUTATIONS: list[Callable[[Request], None]] = [
    _odd_header,
    _odd_header,
    _odd_json,
    _odd_json,
    _encoding,
    _encoding,
    _length,
    _chunked,
    _body_bytes,
    _path,
    _duplicate,
    _expect,
]


def mutated(rng: random.Random) -> bytes:
    request = Request(rng)
    for mutation in rng.sample(MUTATIONS, rng.randint(1, 3)):
        mutation(request)
    return request.encode()


async def _exchange(port: int, raw: bytes) -> int | None:
    """Send one request and read its status line; None if the server closed unanswered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(15):
            line = await reader.readline()
            while line.startswith((b"HTTP/1.1 1", b"HTTP/1.0 1")):  # 100 Continue: interim
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                line = await reader.readline()
        return int(line.split(b" ", 2)[1]) if line.startswith(b"HTTP/1.") else None
    except ConnectionError:
        return None
    finally:
        writer.close()


async def _run(
    port: int,
    requests: list[bytes],
    exchange: Callable[[int, bytes], Awaitable[int | None]] = _exchange,
) -> tuple[Counter[str], list[bytes]]:
    classes: Counter[str] = Counter()
    five: list[bytes] = []
    queue = list(enumerate(requests))

    async def worker() -> None:
        while queue:
            _, raw = queue.pop()
            status = await exchange(port, raw)
            key = "no answer" if status is None else f"{status // 100}xx"
            classes[key] += 1
            if status is not None and status >= 500:
                five.append(raw)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return classes, five


def test_mutated_requests_never_get_500(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    config = write_config(tmp_path / "relay.toml", db, "http://127.0.0.1:9/", extra=EXTRA)
    # A lying Content-Length leaves the server waiting for the rest: keep that wait short.
    config.write_text(config.read_text().replace("[server]", '[server]\nread_timeout = "1s"'))
    rng = random.Random(SEED)
    requests = [mutated(rng) for _ in range(REQUESTS)]
    relay = RelayProcess(config).start()
    try:
        classes, five = asyncio.run(_run(relay.port, requests))
        assert relay.proc is not None
        assert relay.proc.poll() is None, "relay died"
        code = relay.terminate()
    finally:
        relay.ensure_stopped()
    summary = " / ".join(f"{classes[k]} x {k}" for k in sorted(classes))
    print(f"{REQUESTS} mutated requests (seed {SEED}): {summary}")
    assert not five, f"{len(five)} x 5xx; {summary}; first: {five[0][:400]!r}"
    assert sum(classes.values()) == REQUESTS
    assert classes["2xx"] > REQUESTS // 10, summary  # enough reached the store to matter
    assert code == 0
    log = relay.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    stored = query(db, "SELECT count(*) FROM events")[0][0]
    assert stored > 0
