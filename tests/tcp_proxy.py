"""A small TCP proxy for tests, between an agent and the relay, that can misbehave on
cue: ``drop()`` closes every connection at once, ``stall()`` stops forwarding both ways
(the sockets stay open: a dead peer that does not say so), ``half_open()`` stops only what
the agent sends, and ``heal()`` forwards normally again."""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.mode = "pass"  # pass | stall | half
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, upward=True),
            self._pipe(up_reader, writer, upward=False),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upward: bool
    ) -> None:
        for _ in range(1_000_000):  # bounded: ends when either side closes
            data = await reader.read(65536)
            if not data:
                break
            while self.mode == "stall" or (self.mode == "half" and upward):
                await asyncio.sleep(0.05)  # held, not forwarded
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    def drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    def stall(self) -> None:
        self.mode = "stall"

    def half_open(self) -> None:
        self.mode = "half"

    def heal(self) -> None:
        self.mode = "pass"

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
