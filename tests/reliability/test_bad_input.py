"""Bad input at the HTTP layer: clear answers, no 500, nothing lost, nothing wedged."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from pathlib import Path

import aiohttp

from tests.helpers import Receiver, post, query, running, settings_for, sign, wait_for


async def _raw(port: int, payload: bytes, read_timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(read_timeout):
            return await reader.read(65536)
    finally:
        writer.close()


async def test_non_utf8_header_is_stored_and_delivered(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "relay.db"
    body = b'{"type": "x"}'
    request = (
        b"POST /in/demo HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        b"X-Signature: " + sign(body).encode() + b"\r\n"
        b"X-Odd: caf\xe9 \xff\xfe\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    async with running(settings_for(db, receiver.url)) as relay:
        answer = await _raw(relay.port, request)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("delivered",)])
    assert receiver.received[0].body == body
    # Undecodable bytes become U+FFFD; the rest of the value survives (not truncated).
    assert receiver.received[0].headers["X-Odd"] == "caf\ufffd \ufffd\ufffd"


async def test_huge_headers_get_431(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "relay.db"
    request = (
        b"POST /in/demo HTTP/1.1\r\nHost: relay\r\nX-Big: " + b"a" * 100_000 + b"\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    async with running(settings_for(db, receiver.url)) as relay:
        answer = await _raw(relay.port, request)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert query(db, "SELECT count(*) FROM events") == [(0,)]


async def test_trickled_headers_are_cut_off(tmp_path: Path, receiver: Receiver) -> None:
    """Slowloris: a client that never finishes its headers is closed after the timeout."""
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, server={"keepalive_timeout": 1.0})
    async with running(settings) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        started = time.monotonic()
        closed_after = None
        try:
            writer.write(b"POST /in/demo HTTP/1.1\r\n")
            for i in range(40):  # one header line every 0.2 s: never done within 8 s
                await asyncio.sleep(0.2)
                if reader.at_eof():
                    closed_after = time.monotonic() - started
                    break
                writer.write(b"X-Slow-%d: y\r\n" % i)
                try:
                    await writer.drain()
                except ConnectionError:
                    closed_after = time.monotonic() - started
                    break
                if (await _eof_soon(reader)) is True:
                    closed_after = time.monotonic() - started
                    break
        finally:
            writer.close()
    assert closed_after is not None, "the trickling connection was never closed"
    assert closed_after < 4.0


async def test_a_request_head_must_arrive_within_header_timeout(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Slowloris on a fresh connection: closed at header_timeout, however long keep-alive is."""
    db = tmp_path / "relay.db"
    settings = settings_for(
        db, receiver.url, server={"keepalive_timeout": 60.0, "header_timeout": 1.0}
    )
    async with running(settings) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        started = time.monotonic()
        writer.write(b"POST /in/demo HTTP/1.1\r\n")
        try:
            for i in range(40):  # a header line every 0.2 s: never done within 8 s
                writer.write(b"X-Slow-%d: y\r\n" % i)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                if await _eof_soon(reader, 0.2):
                    break
        finally:
            writer.close()
        closed_after = time.monotonic() - started
        status, _, _ = await post_plain(relay.port)
    assert closed_after < 3.0
    assert status == 200


async def post_plain(port: int) -> tuple[int, dict[str, str], object]:
    async with aiohttp.ClientSession() as session:
        return await post(session, port, b'{"after": "slow"}')


async def _eof_soon(reader: asyncio.StreamReader, wait: float = 0.01) -> bool:
    try:
        async with asyncio.timeout(wait):
            data = await reader.read(1)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""


async def test_trickled_body_gets_408_and_is_not_stored(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, server={"read_timeout": 0.5})
    async with running(settings) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(
            b"POST /in/demo HTTP/1.1\r\nHost: r\r\nX-Signature: x\r\nContent-Length: 1000\r\n\r\n"
        )
        writer.write(b"{")
        async with asyncio.timeout(5):
            answer = await reader.read(4096)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert query(db, "SELECT count(*) FROM events") == [(0,)]


async def test_gzip_bomb_is_refused(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    bomb = gzip.compress(b"0" * (50 * 1024 * 1024))  # 50 MiB that packs to ~50 KiB
    async with running(settings_for(db, receiver.url)) as relay:
        url = f"http://127.0.0.1:{relay.port}/in/demo"
        headers = {"Content-Encoding": "gzip", "X-Signature": "x"}
        async with client.post(url, data=bomb, headers=headers) as response:
            assert response.status == 413
        status, _, _ = await post(client, relay.port, b'{"after": "bomb"}')
        assert status == 200  # the relay is fine afterwards
    assert query(db, "SELECT count(*) FROM events") == [(1,)]


async def test_malformed_json_is_stored_without_key_or_type(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """A json: rule cannot apply to a body that is not JSON: the event is kept, not lost."""
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, source={"idempotency_key": "json:/id"})
    async with running(settings) as relay:
        first = await post(client, relay.port, b"{not json")
        second = await post(client, relay.port, b"{not json")
        await wait_for(lambda: len(receiver.received) == 2)
    assert (first[0], second[0]) == (200, 200)
    assert first[2]["id"] != second[2]["id"]  # no key, so never a duplicate
    assert query(db, "SELECT idempotency_key, event_type FROM events") == [(None, None)] * 2


async def test_odd_expect_header_is_417_not_500(tmp_path: Path, receiver: Receiver) -> None:
    """Found by the fuzz test: aiohttp's default handler answered 500 to this."""
    db = tmp_path / "relay.db"
    request = (
        b"POST /in/demo HTTP/1.1\r\nHost: r\r\nExpect: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}"
    )
    async with running(settings_for(db, receiver.url)) as relay:
        answer = await _raw(relay.port, request)
    assert answer.startswith(b"HTTP/1.1 417"), answer[:80]


async def test_expect_continue_refuses_oversized_body_before_upload(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, server={"max_body_size": 1000})
    head = b"POST /in/demo HTTP/1.1\r\nHost: r\r\nExpect: 100-continue\r\n"
    async with running(settings) as relay:
        refused = await _raw(relay.port, head + b"Content-Length: 5000\r\n\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(
            head + b"Content-Length: 2\r\nX-Signature: " + sign(b"{}").encode() + b"\r\n\r\n"
        )
        async with asyncio.timeout(5):
            interim = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"{}")
        async with asyncio.timeout(5):
            final = await reader.readuntil(b"\r\n\r\n")
        writer.close()
    assert refused.startswith(b"HTTP/1.1 413"), refused[:80]
    assert interim.startswith(b"HTTP/1.1 100"), interim
    assert final.startswith(b"HTTP/1.1 200"), final


async def test_no_request_can_choose_where_a_delivery_goes(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Host, X-Forwarded-Host and an absolute request target are only stored, never followed."""
    decoy = await Receiver().start()
    db = tmp_path / "relay.db"
    body = b'{"type": "ssrf.try"}'
    elsewhere = f"127.0.0.1:{decoy.port}".encode()
    request = (
        b"POST http://" + elsewhere + b"/in/demo HTTP/1.1\r\nHost: " + elsewhere + b"\r\n"
        b"X-Forwarded-Host: " + elsewhere + b"\r\nX-Signature: " + sign(body).encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    try:
        async with running(settings_for(db, receiver.url)) as relay:
            answer = await _raw(relay.port, request)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
            await wait_for(lambda: len(receiver.received) == 1)
            # Its one delivery, to the receiver, is over: nothing else could go to the decoy.
            done = [("delivered", 1)]
            await wait_for(lambda: query(db, "SELECT state, attempts FROM deliveries") == done)
    finally:
        await decoy.stop()
    assert decoy.received == []
    assert receiver.received[0].body == body
    assert receiver.received[0].host == f"127.0.0.1:{receiver.port}"


def _signed_request(body: bytes, *headers: bytes) -> bytes:
    return (
        b"POST /in/demo HTTP/1.1\r\nHost: relay\r\nX-Signature: "
        + sign(body).encode()
        + b"\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )


async def test_body_that_is_not_gzip_gets_400_without_credentials(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Issue 14: this request, with no credentials at all, was answered 500."""
    db = tmp_path / "relay.db"
    request = (
        b"POST /in/demo HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 9\r\n\r\nnot-gzip!"
    )
    async with running(settings_for(db, receiver.url)) as relay:
        answer = await _raw(relay.port, request)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"could not be decoded" in answer
        truncated = gzip.compress(b'{"type": "x"}')[:-4]
        answer = await _raw(relay.port, _signed_request(truncated, b"Content-Encoding: gzip"))
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert query(db, "SELECT count(*) FROM events") == [(0,)]


async def test_gzip_body_is_verified_stored_and_delivered_decoded(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "relay.db"
    body = b'{"type": "zipped"}'
    request = (
        b"POST /in/demo HTTP/1.1\r\nHost: relay\r\nX-Signature: " + sign(body).encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n"
        % len(gzip.compress(body))
        + gzip.compress(body)
    )
    async with running(settings_for(db, receiver.url)) as relay:
        answer = await _raw(relay.port, request)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        await wait_for(lambda: len(receiver.received) == 1)
    assert receiver.received[0].body == body
    assert "Content-Encoding" not in receiver.received[0].headers
    assert query(db, "SELECT body, event_type FROM events") == [(body, "zipped")]


async def test_unknown_content_encoding_gets_415_and_is_not_stored(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Before: stored still encoded and delivered labelled as JSON without its coding."""
    db = tmp_path / "relay.db"
    body = b'{"type": "x"}'
    async with running(settings_for(db, receiver.url)) as relay:
        for coding in (b"xyz", b"gzip, gzip", b"br", b"\xe9\xff"):
            answer = await _raw(relay.port, _signed_request(body, b"Content-Encoding: " + coding))
            assert answer.startswith(b"HTTP/1.1 415"), (coding, answer[:200])
            assert b"Accept-Encoding: gzip, x-gzip, deflate, identity" in answer
    assert query(db, "SELECT count(*) FROM events") == [(0,)]


async def test_non_utf8_key_and_content_type_are_stored_escaped_and_deduplicated(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Issue 14: an idempotency key or Content-Type with bytes that are not UTF-8 was a 500
    (its transaction failed). Now the event is stored, the odd bytes escaped in the indexed
    columns and kept as sent in the headers, and a repeat is still a duplicate."""
    db = tmp_path / "relay.db"
    body = b'{"type": "odd"}'
    odd_key = _signed_request(body, b"X-Request-Id: k\xe9\xff")
    odd_type = _signed_request(body, b"Content-Type: application/json\xe9\xff")
    async with running(settings_for(db, receiver.url)) as relay:
        answers = [await _raw(relay.port, r) for r in (odd_key, odd_key, odd_type)]
        await wait_for(lambda: len(receiver.received) == 2)
    assert [a[:15] for a in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert b"X-Relay-Duplicate: true" in answers[1]
    rows = query(db, "SELECT idempotency_key, content_type FROM events ORDER BY received_at")
    assert rows == [("k\\xe9\\xff", None), (None, "application/json\\xe9\\xff")]


async def test_lone_surrogate_in_json_type_is_stored_escaped(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Issue 14: a signed JSON body whose "type" is the lone surrogate "\\ud800" was a 500."""
    db = tmp_path / "relay.db"
    body = b'{"type": "\\ud800"}'
    async with running(settings_for(db, receiver.url)) as relay:
        answer = await _raw(relay.port, _signed_request(body))
        await wait_for(lambda: len(receiver.received) == 1)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert query(db, "SELECT event_type, body FROM events") == [("\\ud800", body)]
    assert receiver.received[0].body == body


async def test_odd_requests_do_not_disturb_the_batch_they_share(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Odd requests sent at the same moment as plain ones (so they share group commits):
    every one of them is acknowledged and stored."""
    db = tmp_path / "relay.db"
    odd = [
        _signed_request(b'{"type": "\\ud800", "n": %d}' % i, b"X-Request-Id: \xe9%d" % i)
        for i in range(20)
    ]
    async with running(settings_for(db, receiver.url)) as relay:
        plain = [post(client, relay.port, b'{"n": %d}' % i, key=f"p{i}") for i in range(40)]
        answers = await asyncio.gather(*plain, *(_raw(relay.port, r) for r in odd))
    assert [a[0] for a in answers[:40]] == [200] * 40
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers[40:])
    assert query(db, "SELECT count(*) FROM events") == [(60,)]
