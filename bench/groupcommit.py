"""The floor under relay's ingest: the least a durable webhook receiver on relay's stack does.

aiohttp + uvloop; per request: read the body, verify the HMAC (``X-Signature: sha256=…``,
as relay's ``verify = "hmac"`` source in bench/ingest.py), parse the JSON and take its id
(the key; kept, not deduplicated on: wrk posts one body, and relay's bench source stores
every request too), queue the row, and answer 200 once the transaction holding it has
committed (stdlib sqlite3 on one writer thread, WAL, ``synchronous = FULL``, one
transaction per batch of whatever is queued: group commit). No routing, no deliveries, no
metrics, no logging, no ids of its own beyond a counter. What relay does beyond this is
what its per-event cost account in docs/benchmarks.md has to explain.

Usage: python bench/groupcommit.py PORT DB
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

SECRET = b"bench-secret"  # bench/ingest.py's


class Writer:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, key TEXT,"
            " received_at REAL NOT NULL, body BLOB NOT NULL)"
        )
        self._thread = ThreadPoolExecutor(1)
        self._queue: list[tuple[tuple[str | None, float, bytes], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    def _commit(self, rows: list[tuple[str | None, float, bytes]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT INTO events (key, received_at, body) VALUES (?, ?, ?)",
            rows,
        )
        self._db.execute("COMMIT")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            await loop.run_in_executor(self._thread, self._commit, [row for row, _ in batch])
            for _, future in batch:
                future.set_result(None)

    async def store(self, row: tuple[str | None, float, bytes]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        self._wake.set()
        await future


def app(path: str) -> web.Application:
    writer: Writer | None = None

    async def start(application: web.Application) -> None:
        nonlocal writer
        writer = Writer(path)
        application["writer_task"] = asyncio.create_task(writer.run())

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        given = request.headers.get("X-Signature", "")
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "bad signature"}, status=401)
        try:
            key = json.loads(body).get("id")
        except (ValueError, AttributeError):
            key = None
        assert writer is not None
        await writer.store((key, time.time(), body))
        return web.json_response({"stored": True})

    application = web.Application()
    application.router.add_post("/in/{source}", receive)
    application.on_startup.append(start)
    return application


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    web.run_app(app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), access_log=None)
