"""At a stop, every connection relay has taken off the listening socket gets its answer.

Under systemd's socket (relay.sockets) a restart loses nothing only if each connection is
either still in the socket's queue, for the next relay, or accepted and answered by this
one: a connection closed unanswered is a webhook the provider sees fail.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from relay.app import Relay
from relay.listener import GuardedSite
from tests.helpers import BODY_JSON, Receiver, query, settings_for, sign, wait_for


def _request(key: str) -> bytes:
    head = (
        "POST /in/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Signature: {sign(BODY_JSON)}\r\nX-Request-Id: {key}\r\n"
        f"Content-Length: {len(BODY_JSON)}\r\n\r\n"
    )
    return head.encode() + BODY_JSON


async def _answer(loop: asyncio.AbstractEventLoop, client: socket.socket) -> bytes:
    """All the relay says before it closes the connection (bounded: 64 reads)."""
    said = b""
    for _ in range(64):
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(client, 65_536), 30)
        except ConnectionError:
            break
        if not chunk:
            break
        said += chunk
    return said


async def test_a_connection_accepted_but_not_yet_served_when_the_stop_begins_is_answered(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The race of a restart: the acceptor has taken a connection off the queue, and the
    stop begins before the loop has handed it to aiohttp. Before the fix the guard did not
    know it yet, so the stop did not wait for its request and closed it as idle (two
    "Can not write request body" in 9,484 requests of tests/reliability/test_restarts.py
    on a busy machine; here on every run)."""
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, server={"header_timeout": 30})
    relay = Relay(settings)
    await relay.start()
    loop = asyncio.get_running_loop()
    client = socket.create_connection(("127.0.0.1", relay.port))  # now in the listen queue
    client.setblocking(False)
    stopping: asyncio.Task[None] | None = None
    try:
        assert relay._runner is not None
        site = next(s for s in relay._runner.sites if isinstance(s, GuardedSite))
        acceptor = site._acceptor()
        acceptor._readable()  # what the loop runs when the socket is readable: accept it
        stopping = asyncio.create_task(relay.stop())
        # The client sends its request once relay has stopped accepting (or stopped).
        await wait_for(lambda: stopping.done() or not acceptor.is_serving(), step=0.005)
        await loop.sock_sendall(client, _request("accepted-at-stop"))
        said = await _answer(loop, client)
        await asyncio.wait_for(stopping, 60)
    finally:
        client.close()
        if stopping is None:
            await relay.stop()
        elif not stopping.done():
            await asyncio.wait_for(stopping, 60)
    assert said.startswith(b"HTTP/1.1 200"), said[:200]
    assert b"Connection: close" in said
    keys = query(db, "SELECT idempotency_key FROM events")
    assert keys == [("accepted-at-stop",)]
