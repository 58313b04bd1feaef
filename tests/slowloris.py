"""A slowloris attacker, run as its own process by tests/reliability/test_slowloris.py so
that its thousands of tasks do not slow the test's own measurements.

    python -m tests.slowloris [--silent] PORT COUNT ADDRESS [ADDRESS ...]

Opens COUNT connections to 127.0.0.1:PORT spread over the local ADDRESSes, each sending a
request head one byte every 0.5 s (with ``--silent``: nothing at all, as a client that never
sends its TLS ClientHello) and reconnecting at once whenever the relay closes it.
Prints ``connected N`` on stdout each second; stops on SIGTERM or after 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys


class Slowloris:
    def __init__(self, port: int, count: int, addresses: list[str], silent: bool) -> None:
        self.port = port
        self.silent = silent
        self.count = count
        self.addresses = addresses
        self.connects = 0
        self.stop = asyncio.Event()

    async def _one(self, address: str) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(address, 0)
                )
            except OSError:
                await asyncio.sleep(0.05)
                continue
            self.connects += 1
            try:
                if not self.silent:
                    writer.write(b"POST /in/demo HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
                while not self.stop.is_set() and not reader.at_eof():
                    if not self.silent:
                        writer.write(b"a")
                        await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            if await reader.read(1024) == b"":
                                break
            except ConnectionError:
                pass
            finally:
                writer.close()

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._one(self.addresses[i % len(self.addresses)]))
            for i in range(self.count)
        ]
        for _ in range(60):  # bounded: a minute at most
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.stop.wait()
            if self.stop.is_set():
                break
            print(f"connected {self.connects}", flush=True)
        self.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def main(port: int, count: int, addresses: list[str], silent: bool) -> None:
    attacker = Slowloris(port, count, addresses, silent)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, attacker.stop.set)
    await attacker.run()


if __name__ == "__main__":
    silent = sys.argv[1] == "--silent"
    args = sys.argv[2:] if silent else sys.argv[1:]
    asyncio.run(main(int(args[0]), int(args[1]), args[2:], silent))
