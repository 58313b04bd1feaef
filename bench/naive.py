"""A per-request-commit relay: what a person writes in an afternoon, as a baseline.

aiohttp + aiosqlite, one shared connection, one INSERT and one COMMIT per request, with
synchronous=FULL in WAL mode: the same durability promise as relay's default.
Usage: python bench/naive.py PORT DBPATH
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sys
import time
import uuid

import aiosqlite
import uvloop
from aiohttp import web

SECRET = b"bench-secret"


async def main(port: int, path: str) -> None:
    db = await aiosqlite.connect(path)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute(
        "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, received_at REAL, "
        "headers TEXT, body BLOB)"
    )
    lock = asyncio.Lock()  # one transaction at a time on the shared connection

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        given = request.headers.get("X-Signature", "").removeprefix("sha256=")
        if not hmac.compare_digest(hmac.new(SECRET, body, hashlib.sha256).hexdigest(), given):
            return web.Response(status=401)
        async with lock:
            await db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?)",
                (uuid.uuid4().hex, time.time(), str(dict(request.headers)), body),
            )
            await db.commit()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{path:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("naive.ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
