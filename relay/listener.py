"""The listening socket: aiohttp's TCP site, with connections that cannot starve each other.

A slow client (slowloris) holds connections open by sending its request head one byte at a
time. aiohttp closes such a connection only at ``keepalive_timeout``, and a bare cap on open
connections then lets a few thousand of them lock real webhooks out. So every connection
passes through a guard:

- **A deadline for the first request head** (``header_timeout``): a connection that has not
  sent one complete request head by then is closed.
- **A limit per client address** (``max_connections_per_address``; an IPv6 /64 counts as one
  address; ``trusted_proxies`` are exempt, since every client behind a proxy shares its
  address): past it a new connection gets a one-line 503 and is closed at once.
- **Eviction at the cap** (``max_connections``): a new connection makes room by closing the
  oldest connection that is idle or has not finished its request head; when every open
  connection is busy with a complete request, new ones wait in the socket's queue, and
  after ``BUSY_WAIT`` of that they are refused with 503.
- **Relay's own work first.** A TLS connection whose ClientHello has come waits on relay
  (for ``HANDSHAKE_GRACE`` its handshake, then as long for its request), and one that sent
  a request that recently may still be reading its answer: neither is evicted. At most
  ``HANDSHAKES`` handshakes run at once; past that (or when nothing else can make room) new
  connections wait in the socket's queue, where no deadline of relay's runs. Else a burst
  (what waited through a restart) started every handshake at once on a busy CPU, ran out
  of ``header_timeout``, and evicted its own handshakes and fresh answers.

A connection is busy while aiohttp holds a parsed request for it (queued or in a handler):
only then has the client proven it can send a request, and only then is there work to lose.

The guard holds a connection from accept. Over TLS that is before its handshake: a client
that never sends its ClientHello is a slowloris of the stage before HTTP, so it counts
against its address and ``max_connections``, is evicted until its ClientHello comes, and shares
one ``header_timeout`` budget for the handshake and the first request head. Over plain HTTP
it is before the hand-over to aiohttp, a turn of the loop later: a stop that begins in
between waits for that connection's request too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import socket
import ssl
import sys
import termios
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from relay import clienthello, memory
from relay.acceptor import Acceptor
from relay.configtypes import IPNetwork
from relay.network import parse_address, within

_BODY = b'{"error": "too many connections"}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


BURST = 128  # open connections at once that count as a burst worth giving memory back after
HANDSHAKE_GRACE = 2.0  # seconds a TLS handshake, then its first request, is relay's to wait for
HANDSHAKES = 64  # TLS handshakes at once; more wait in the socket's queue
BUSY_WAIT = 1.0  # seconds new connections wait while every place is busy, then get 503


def address_key(peer: Any) -> str | None:
    """What the per-address limit counts: the IPv4 address, or the IPv6 /64 (one host or
    one customer can hold a whole /64)."""
    host = peer[0] if isinstance(peer, tuple) and peer else None
    address = parse_address(host) if isinstance(host, str) else None
    if address is None:
        return None
    if address.version == 6:
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class Guard:
    """The open connections of one listener, oldest first, and how many each address has."""

    def __init__(
        self,
        max_connections: int,
        per_address: int,
        header_timeout: float,
        trusted: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.max_connections = max_connections
        self.per_address = per_address
        self.header_timeout = header_timeout
        self.trusted = trusted
        self._open: dict[Connection, None] = {}  # insertion order: oldest first
        self._by_address: dict[str, int] = {}
        self._peak = 0  # the most open at once since memory was last given back
        self._busy_since: float | None = None  # every place busy with a request since
        self._handshaking: dict[Connection, None] = {}  # ClientHello in, handshake not done
        self.on_room: Callable[[], None] | None = None  # the acceptor, while it waits
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, connection: Connection) -> bool:
        """Make room for a new connection if it may have it; False: refuse it."""
        key = connection.address
        if key is not None and self._by_address.get(key, 0) >= self.per_address:
            peer = parse_address(connection.host)
            if not (self.trusted and within(peer, self.trusted)):
                self.refused += 1
                return False
        if len(self._open) >= self.max_connections and not self._evict_one():
            self.refused += 1
            return False
        self._open[connection] = None
        self._peak = max(self._peak, len(self._open))
        if key is not None:
            self._by_address[key] = self._by_address.get(key, 0) + 1
        return True

    async def answered(self, within: float) -> None:
        """Wait (at most ``within`` seconds) until every open connection has sent a whole
        request: at a stop, a connection accepted a moment ago still gets its answer, not
        a close (the next relay would never see that request). What is in flight then is
        the runner's to finish."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        # aiohttp says nowhere when a request head has been parsed: look every 10 ms.
        while loop.time() < deadline and any(not c.asked for c in self._open):  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def now(self) -> float:
        """The loop's clock, which every decision of the guard reads."""
        return asyncio.get_running_loop().time()

    def room(self) -> bool:
        """May a connection be accepted now? Not while ``HANDSHAKES`` handshakes run, nor
        when every place is taken and none can be evicted: new connections are better left
        in the socket's queue than accepted and then cut. When every place is busy with a
        request for ``BUSY_WAIT``, they are accepted to be refused (503: come back later)."""
        now = self.now()
        running = sum(1 for c in self._handshaking if c.owed(now))
        if running >= HANDSHAKES:
            return False
        full = len(self._open) >= self.max_connections
        waiting_on_relay = False
        for connection in self._open if full else ():
            if connection.busy:
                continue
            if not connection.owed(now):
                full = False  # a victim to evict
                break
            waiting_on_relay = True
        if not full:
            self._busy_since = None
            return True
        if waiting_on_relay:
            return False
        if self._busy_since is None:
            self._busy_since = now
        return now - self._busy_since >= BUSY_WAIT

    def _evict_one(self) -> bool:
        now = self.now()
        for victim in self._open:  # oldest first
            if not victim.busy and not victim.owed(now):
                self.forget(victim)
                victim.abort()
                self.evicted += 1
                return True
        return False

    def handshaking(self, connection: Connection, started: bool) -> None:
        """A TLS handshake relay owes began, or ended (done, failed or gone)."""
        if started:
            self._handshaking[connection] = None
        elif self._handshaking.pop(connection, 0) is None:
            self._room()

    def _room(self) -> None:
        if self.on_room is not None:
            self.on_room()

    def forget(self, connection: Connection) -> None:
        """It is gone (or about to be): its place is free."""
        self.handshaking(connection, started=False)
        if connection not in self._open:
            return
        del self._open[connection]
        key = connection.address
        if key is not None:
            left = self._by_address[key] - 1
            if left:
                self._by_address[key] = left
            else:
                del self._by_address[key]
        self._room()
        if self._peak >= BURST and len(self._open) <= self._peak // 8:
            # A burst of connections (a flood, or a provider's catch-up) has ended: give its
            # buffers back to the system, once per burst (relay.memory says why).
            self._peak = len(self._open)
            memory.release()


class Connection(asyncio.Protocol):
    """One accepted connection: admitted by the guard, then aiohttp's request handler does
    the HTTP; this only forwards the transport's calls to it and watches the head deadline.
    """

    __slots__ = (
        "_admitted_at",
        "_deadline",
        "_fd",
        "_guard",
        "_handler",
        "_handshake",
        "_heard_at",
        "_ready_at",
        "_sent_at",
        "_server",
        "_transport",
        "address",
        "host",
    )

    def __init__(self, guard: Guard, server: web.Server, fd: int = -1) -> None:
        self._fd = fd  # the accepted socket's, to see what waits unread in it
        self._guard = guard
        self._server = server
        self._handler: Any = None
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._admitted_at: float | None = None  # set when admitted before connection_made
        self._handshake: asyncio.Task[None] | None = None
        self._heard_at: float | None = None  # its ClientHello came: relay owes a handshake
        self._ready_at: float | None = None  # when its handshake (or hand-over) ended
        self._sent_at: float | None = None  # when its client last sent bytes
        self.address: str | None = None
        self.host: str | None = None

    def admit_accepted(self, peer: Any, handshake: Callable[[], asyncio.Task[None]]) -> bool:
        """Admit a connection at accept, before its hand-over to aiohttp (and over TLS its
        handshake) that ``handshake()`` starts and ``abort`` cancels; False: refused,
        nothing started."""
        self.host = peer[0] if isinstance(peer, tuple) and peer else None
        self.address = address_key(peer)
        if not self._guard.admit(self):
            return False
        self._admitted_at = self._guard.now()
        self._handshake = handshake()
        return True

    def heard(self) -> None:
        """Its TLS ClientHello has come: until its handshake is done (and its request had
        ``HANDSHAKE_GRACE`` to follow), it waits on relay and is not evicted."""
        if self._heard_at is None and self._transport is None:
            self._heard_at = self._guard.now()
            self._guard.handshaking(self, started=True)

    def owed(self, now: float) -> bool:
        """It waits on relay, or was answered a moment ago: a TLS handshake relay has yet
        to finish, or one finished a moment ago whose request is on its way; a request
        sent within ``HANDSHAKE_GRACE`` (its answer may still be on its way out: closing
        now would cut it); a plain one whose first bytes relay has not read yet. A client
        that has sent all it will of an unfinished head is not owed."""
        if self.asked:
            return self._sent_at is not None and now - self._sent_at < HANDSHAKE_GRACE
        if self._heard_at is None:
            # Plain HTTP: what it sent before relay first read it (a head that waited in
            # the socket's queue) is relay's to read; once read, it is the client's turn.
            return self._sent_at is None and _unread(self._fd)
        began = self._heard_at if self._ready_at is None else self._ready_at
        return now - began < HANDSHAKE_GRACE

    def handshake_failed(self) -> None:
        """The hand-over (or handshake) ended without a connection: its place is free."""
        self._handshake = None
        self._guard.forget(self)

    def budget(self) -> float:
        """What is left of ``header_timeout`` since accept."""
        if self._admitted_at is None:
            return self._guard.header_timeout
        elapsed = self._guard.now() - self._admitted_at
        return max(0.0, self._guard.header_timeout - elapsed)

    @property
    def busy(self) -> bool:
        """aiohttp has a complete request of this connection queued or in a handler. Its
        RequestHandler keeps that in private attributes; tests/reliability/test_abuse.py
        fails if they change meaning."""
        handler = self._handler
        return handler is not None and bool(
            getattr(handler, "_request_in_progress", True) or getattr(handler, "_messages", ())
        )

    @property
    def asked(self) -> bool:
        """It has sent a whole request head (answered or being answered)."""
        handler = self._handler
        if handler is None:
            return False
        return self.busy or getattr(handler, "_request_count", 1) > 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._handshake = None
        self._handler = self._server()
        self._handler.connection_made(transport)
        self._ready_at = self._guard.now()
        self._guard.handshaking(self, started=False)
        self._deadline = asyncio.get_running_loop().call_later(self.budget(), self._head_due)

    def _head_due(self) -> None:
        self._deadline = None
        if self._handler is not None and getattr(self._handler, "_request_count", 1) == 0:
            self._guard.forget(self)
            self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        elif self._handshake is not None:
            self._handshake.cancel()  # still in its TLS handshake: that closes the socket

    def data_received(self, data: bytes) -> None:
        if self._handler is not None:
            self._sent_at = self._guard.now()
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._handler is not None:
            result: bool | None = self._handler.eof_received()
            return result
        return None

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._guard.forget(self)
        if self._handler is not None:
            self._handler.connection_lost(exc)
            self._handler = None


def _unread(fd: int) -> bool:
    """Bytes wait in the socket that relay has not read."""
    try:
        waiting = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:  # gone, or never a socket
        return False
    return int.from_bytes(waiting, sys.byteorder) > 0


class GuardedSite(web.TCPSite):
    """The public site. With ``sock`` (a socket systemd passed: relay.sockets) it serves
    that socket instead of binding one; the guard applies to it all the same."""

    __slots__ = ("_sock", "guard")

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        guard: Guard,
        backlog: int,
        sock: socket.socket | None = None,
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self.guard = guard
        self._sock = sock

    def _listening(self) -> socket.socket:
        """The socket to serve: the inherited one, or a new one bound to host and port."""
        if self._sock is not None:
            self._sock.setblocking(False)
            self._sock.listen(self._backlog)
            return self._sock
        host = str(self._host or "0.0.0.0")  # noqa: S104 - as TCPSite: empty means all
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, self._port), family=family, backlog=self._backlog)
        sock.setblocking(False)
        return sock

    async def start(self) -> None:
        await web.BaseSite.start(self)  # register with the runner, as TCPSite.start does
        server = self._runner.server
        assert server is not None
        sock = self._listening()
        self._bound_port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        acceptor = Acceptor(
            sock, loop, lambda conn, peer: self._accepted(conn, peer, server), self.guard.room
        )
        self.guard.on_room = acceptor.resume
        self._server = acceptor

    def _accepted(self, conn: socket.socket, peer: Any, server: web.Server) -> None:
        """A connection accepted: admitted by the guard at once, then handed to aiohttp's
        handler (``Connection``). Admitted before the hand-over, which takes a turn of the
        loop: a stop that begins in between then waits for its request like any other's,
        rather than closing it as idle (tests/test_stop.py)."""
        connection = Connection(self.guard, server, conn.fileno())

        def start() -> asyncio.Task[None]:
            return self._acceptor().keep(self._serve(conn, connection))

        if not connection.admit_accepted(peer, start):
            with contextlib.suppress(OSError):  # a new socket's buffer takes 200 bytes
                conn.send(_REFUSAL)
            conn.close()

    async def _serve(self, conn: socket.socket, connection: Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: connection, conn)
        except (OSError, ConnectionError):
            connection.handshake_failed()  # gone before it was served: the client's problem
            conn.close()
        except asyncio.CancelledError:  # evicted before it was served
            connection.handshake_failed()
            conn.close()
            raise

    def _acceptor(self) -> Acceptor:
        assert isinstance(self._server, Acceptor)
        return self._server


class TlsSite(GuardedSite):
    """The guarded site over TLS. It accepts connections itself, so each one gets the TLS
    context of that moment (``contexts``): a renewed certificate reaches new connections
    while open ones keep theirs, and while a TLS-ALPN-01 challenge is pending (``peek``),
    a connection whose ClientHello asks for ``acme-tls/1`` gets the challenge's answer.
    Each accepted socket is admitted by the guard at once (see the module's docstring), and
    its handshake shares the ``header_timeout`` budget with the first request head."""

    __slots__ = ("_contexts", "_peek")

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        guard: Guard,
        backlog: int,
        contexts: Callable[[clienthello.Hello | None], ssl.SSLContext | None],
        peek: Callable[[], bool],
        sock: socket.socket | None = None,
    ) -> None:
        super().__init__(runner, host, port, guard=guard, backlog=backlog, sock=sock)
        self._contexts = contexts
        self._peek = peek

    def _accepted(self, conn: socket.socket, peer: Any, server: web.Server) -> None:
        connection = Connection(self.guard, server, conn.fileno())

        def start() -> asyncio.Task[None]:
            return self._acceptor().keep(self._handshake(conn, connection))

        if not connection.admit_accepted(peer, start):
            conn.close()  # over its address's cap, or every place busy: nothing to say
            return
        with contextlib.suppress(OSError):  # what waited in the queue has its hello already
            if conn.recv(1, socket.MSG_PEEK):
                connection.heard()

    async def _handshake(self, conn: socket.socket, connection: Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            conn.setblocking(False)
            hello = await clienthello.peek(conn, connection.budget())
            if hello is not None:
                connection.heard()
            if hello is not None and hello.plain:
                # Plain HTTP to the HTTPS port: say so, as nginx and Caddy do, rather than
                # close without a word (curl then reports an empty reply).
                with contextlib.suppress(OSError):
                    conn.recv(65_536)  # what was peeked: unread bytes at close send a reset
                    conn.send(_PLAIN_TO_TLS)
                    conn.shutdown(socket.SHUT_WR)
                raise ConnectionAbortedError
            context = self._contexts(hello if self._peek() else None)
            if context is None:  # no certificate yet: nothing to say
                raise ConnectionAbortedError
            await loop.connect_accepted_socket(
                lambda: connection,
                conn,
                ssl=context,
                ssl_handshake_timeout=max(connection.budget(), 0.001),
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            connection.handshake_failed()  # failed or abandoned: the client's problem
            conn.close()
        except asyncio.CancelledError:  # evicted, or the listener stops
            connection.handshake_failed()
            conn.close()
            raise


_HINT = b"This port speaks HTTPS: send the request to https:// instead of http://.\n"
_PLAIN_TO_TLS = (
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_HINT), _HINT)
)
