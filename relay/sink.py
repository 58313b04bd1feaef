"""``relay sink``: a tiny receiver that prints each webhook it gets. For trying relay out.

It answers every POST with a fixed status (200 unless told otherwise), so a person can
watch deliveries arrive and, with ``--status 503``, watch relay retry.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

from relay.sections import split_address


def _printable(body: bytes, limit: int = 300) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + ("…" if len(body) > limit else "")


async def run_sink(listen: str, status: int) -> None:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        print(
            f"sink: {request.method} {request.path} "
            f"event={request.headers.get('X-Relay-Event-Id', '-')} "
            f"attempt={request.headers.get('X-Relay-Attempt', '-')} "
            f"type={request.headers.get('Content-Type', '-')} bytes={len(body)} -> {status}\n"
            f"      {_printable(body)}",
            flush=True,
        )
        return web.Response(status=status, text="ok\n" if status < 300 else "failing on purpose\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = split_address(listen)
    await web.TCPSite(runner, host, port).start()
    print(f"sink: listening on {listen}, answering {status}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
