"""A few connections for the scheduler's short reads, replaced rather than repaired.

psycopg's pool reconnects with an exponential back-off (1, 2, 4, 8, 16 s …) and makes a
waiting reader wait up to 30 s: after PostgreSQL came back, a lane could wait half a minute
for a connection and /readyz said "not ready" all that time. Here, as in the writer: a
connection that ends a read in any state other than idle is closed, a new one is tried at
most every ``RECONNECT_GAP`` seconds while the server is away (readers in between fail at
once with ``StorageUnavailable``, a 503), and a reader waits at most ``WAIT`` seconds for a
free connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from relay.errors import StorageError, StorageUnavailable
from relay.store.postgresql.database import connect_async, known_good

RECONNECT_GAP = 0.25  # seconds between connection attempts while the server is away
WAIT = 5.0  # seconds a reader waits for a free connection


class ReadConnections:
    def __init__(self, url: str, size: int = 4) -> None:
        self._url = url
        self._size = size
        self._idle: list[Any] = []
        self._open = 0  # idle, lent, or being opened
        self._freed = asyncio.Condition()
        self._connect_after = 0.0
        self._error = ""
        self._closing: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def connection(self, fresh: bool = False) -> AsyncIterator[Any]:
        """A connection for one read. ``fresh``: not an idle one (after a read failed on an
        idle connection, which the server may have closed meanwhile, the others are suspect
        too: they are closed, and the read tries once more on a new one)."""
        if fresh:
            while self._idle:
                self._discard(self._idle.pop())
        conn = await self._take()
        try:
            yield conn
        finally:
            await self._give_back(conn)

    async def _take(self) -> Any:
        deadline = time.monotonic() + WAIT
        while True:
            if self._idle:
                return self._idle.pop()
            if self._open < self._size:
                return await self._connect()
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageUnavailable(f"no database connection free for reads within {WAIT:g}s")
            async with self._freed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._freed.wait()

    async def _connect(self) -> Any:
        if time.monotonic() < self._connect_after:
            raise StorageUnavailable(self._error)
        self._open += 1
        try:
            return await connect_async(self._url)
        except StorageError as exc:
            self._open -= 1
            self._connect_after = time.monotonic() + RECONNECT_GAP
            self._error = str(exc)
            raise StorageUnavailable(self._error) from None
        except BaseException:
            self._open -= 1
            raise

    async def _give_back(self, conn: Any) -> None:
        if known_good(conn):
            self._idle.append(conn)
        else:
            self._discard(conn)
        async with self._freed:
            self._freed.notify()

    def _discard(self, conn: Any) -> None:
        self._open -= 1
        task = asyncio.create_task(_close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        while self._idle:
            self._discard(self._idle.pop())
        await asyncio.gather(*self._closing, return_exceptions=True)


async def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):  # thrown away for being unusable, or at the end
        await conn.close()
