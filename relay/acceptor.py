"""The accept loop of relay's public listener (relay.listener): it takes connections from
the listening socket only while the guard has room for them, and leaves the rest in the
socket's queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from relay.log import Throttled

log = logging.getLogger("relay.listener")


ACCEPT_BATCH = 64  # connections taken per readiness of the listening socket
ACCEPT_PAUSE = 0.1  # seconds without accepting (out of descriptors, or no room: Guard.room)


class Acceptor(asyncio.AbstractServer):
    """The accept loop of a guarded site, and what BaseSite.stop() closes.

    relay accepts connections itself (a reader on the listening socket) rather than through
    the event loop's server: closing uvloop's server dropped a connection it had accepted
    but not yet handed over (one per restart: a request the client saw closed unanswered).
    Here a connection is either still in the socket's queue, where the next relay on the
    same socket finds it (relay.sockets), or accepted and handed over at once."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        accepted: Callable[[socket.socket, Any], None],
        room: Callable[[], bool],
    ) -> None:
        self._sock = sock
        self._loop = loop
        self._accepted = accepted
        self._room = room
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._paused = False
        self._failing = Throttled(log, "listener.accept_failed")
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._room():  # every place holds relay's own work: leave the rest queued
                self._pause()
                return
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: wait, do not spin
                self._failing.say(self._loop.time(), error=str(exc))
                self._pause()
                return
            conn.setblocking(False)
            self._accepted(conn, peer)

    def _pause(self) -> None:
        if self._paused:
            return
        self._paused = True
        self._loop.remove_reader(self._sock.fileno())
        self._loop.call_later(ACCEPT_PAUSE, self.resume)

    def resume(self) -> None:
        """Accept again (a place or a handshake slot came free, or the pause is over)."""
        if self._paused and not self._closed:
            self._paused = False
            self._loop.add_reader(self._sock.fileno(), self._readable)

    def keep(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError, OSError):  # already closed
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    async def wait_closed(self) -> None:
        return None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._closed

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        raise NotImplementedError("relay drives its sites itself")
