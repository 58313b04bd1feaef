"""A destination for benchmarks that times received → delivered.

Answers 200 to every POST at once. Each delivery carries ``X-Sent-At`` (wall-clock time the
load generator sent the original request; same machine, same clock) and ``X-Request-Id``;
the first delivery of each id is timed. On SIGTERM it writes a JSON summary (count, p50,
p99, p99.9 in ms) to the file given as the second argument.

Usage: python bench/receiver.py PORT SUMMARY.json
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import Histogram


async def main(port: int) -> dict[str, float | int | None]:
    seen: set[str] = set()
    e2e = Histogram()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        key = request.headers.get("X-Request-Id", "")
        sent = request.headers.get("X-Sent-At")
        if sent and key not in seen:
            seen.add(key)
            e2e.add(time.time() - float(sent))
        return web.Response()

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await runner.cleanup()
    return e2e.summary()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(main(int(sys.argv[1])))
    Path(sys.argv[2]).write_text(json.dumps(result))
