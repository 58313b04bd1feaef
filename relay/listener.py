"""The listening socket: aiohttp's TCP site, with a bound on open connections.

Past ``max_connections`` a new connection gets a one-line 503 and is closed at once, so
clients holding many connections open cannot exhaust file descriptors or memory. Idle and
half-sent connections are closed by ``keepalive_timeout`` (see relay.app), which frees room.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

_BODY = b'{"error": "too many connections"}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REFUSAL)
        transport.close()


class BoundedSite(web.TCPSite):
    __slots__ = ("_max_connections",)

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, *, max_connections: int, backlog: int
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self._max_connections = max_connections

    async def start(self) -> None:
        await web.BaseSite.start(self)  # register with the runner, as TCPSite.start does
        server = self._runner.server
        assert server is not None
        limit = self._max_connections

        def protocol() -> asyncio.BaseProtocol:
            return _Refuse() if len(server.connections) >= limit else server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        sockets = self._server.sockets
        if sockets:
            self._bound_port = sockets[0].getsockname()[1]
