"""What the first bytes of a connection to the HTTPS port say, read without taking them off
the socket: a TLS ClientHello's server name and ALPN protocols (the certificate to present,
an ACME TLS-ALPN-01 challenge), or a plain HTTP request sent to the wrong port."""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass


async def peek(conn: socket.socket, within: float) -> Hello | None:
    """Look at the ClientHello without taking it off the socket (the handshake reads it
    again); None if it does not come complete within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        ready: asyncio.Future[None] = loop.create_future()

        def readable(ready: asyncio.Future[None] = ready) -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(conn.fileno(), readable)
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await ready
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(conn.fileno())
        try:
            data = conn.recv(16_389, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        if not data:
            return None
        hello = client_hello(data)
        if hello is not None:
            return hello
        await asyncio.sleep(0.005)  # part of it came: the rest is on its way
    return None


@dataclass(frozen=True, slots=True)
class Hello:
    server_name: str | None
    alpn: tuple[str, ...]
    plain: bool = False  # not TLS at all: a plain HTTP request


_METHOD = re.compile(rb"[A-Z]{3,10} ")


def client_hello(data: bytes) -> Hello | None:
    """The server name and ALPN protocols of a TLS ClientHello at the start of ``data``;
    None while it is incomplete; a Hello with neither if it is not one."""
    nothing = Hello(None, ())
    if len(data) < 5:
        return None
    if data[0] != 0x16:  # not a handshake record: not TLS, or not a ClientHello
        return Hello(None, (), plain=True) if _METHOD.match(data) else nothing
    end = 5 + int.from_bytes(data[3:5], "big")
    if len(data) < end:
        return None
    body = data[5:end]
    try:
        if body[0] != 0x01:
            return nothing
        i = 4 + 2 + 32  # handshake header, client_version, random
        i += 1 + body[i]  # session id
        i += 2 + int.from_bytes(body[i : i + 2], "big")  # cipher suites
        i += 1 + body[i]  # compression methods
        stop = i + 2 + int.from_bytes(body[i : i + 2], "big")
        i += 2
        name: str | None = None
        alpn: list[str] = []
        while i + 4 <= min(stop, len(body)):
            kind = int.from_bytes(body[i : i + 2], "big")
            size = int.from_bytes(body[i + 2 : i + 4], "big")
            ext = body[i + 4 : i + 4 + size]
            if kind == 0 and len(ext) >= 5 and ext[2] == 0:  # server_name, host_name
                length = int.from_bytes(ext[3:5], "big")
                name = ext[5 : 5 + length].decode("ascii", "replace").lower()
            elif kind == 16 and len(ext) >= 2:  # application_layer_protocol_negotiation
                j = 2
                while j < len(ext):
                    length = ext[j]
                    alpn.append(ext[j + 1 : j + 1 + length].decode("ascii", "replace"))
                    j += 1 + length
            i += 4 + size
    except IndexError:
        return nothing
    return Hello(name, tuple(alpn))
