"""The ceiling of the stack: aiohttp on uvloop that reads the body and answers 200.

bench/ingest.py also runs it as the fast, quiet receiver of relay's deliveries.

Usage: python bench/hello.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_post("/{path:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("hello.ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
