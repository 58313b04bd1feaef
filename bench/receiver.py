"""A quiet, fast receiver for relay's deliveries during benchmarks: answers 200, counts.

Usage: python bench/receiver.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web


async def main(port: int) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{path:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("receiver.ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
