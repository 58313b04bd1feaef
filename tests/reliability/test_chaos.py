"""Receiver chaos: random 200, 500, 429 with Retry-After, hangs past the timeout, resets.

Every event must end delivered or dead per policy, and relay's attempt log must match what
the receiver saw, request for request.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.helpers import post, query, running, settings_for, wait_for

EVENTS = 40
MAX_ATTEMPTS = 4


class ChaosReceiver:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: dict[int, list[str]] = defaultdict(list)  # delivery id -> what it answered
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        delivery = int(request.headers["X-Relay-Delivery-Id"])
        choice = self.rng.choices(
            ["200", "500", "429", "hang", "reset"], weights=[30, 25, 15, 15, 15]
        )[0]
        self.seen[delivery].append(choice)
        if choice == "hang":
            await asyncio.sleep(1.0)  # past the destination's 0.3 s timeout
            return web.Response(status=200)
        if choice == "reset":
            assert request.transport is not None
            request.transport.abort()  # connection dropped without an answer
            return web.Response(status=200)
        if choice == "429":
            return web.Response(status=429, headers={"Retry-After": "0"})
        return web.Response(status=int(choice))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}/hook"


async def test_every_event_ends_delivered_or_dead_and_the_log_matches(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    chaos = ChaosReceiver(seed=20261123)
    url = await chaos.start()
    db = tmp_path / "relay.db"
    settings = settings_for(
        db,
        url,
        retry={"max_attempts": MAX_ATTEMPTS, "base": 0.02, "cap": 0.1},
        destination={"timeout": 0.3},
    )
    try:
        async with running(settings) as relay:
            for i in range(EVENTS):
                status, _, _ = await post(client, relay.port, b'{"n": %d}' % i)
                assert status == 200
            await wait_for(
                lambda: (
                    query(db, "SELECT count(*) FROM deliveries WHERE state = 'pending'") == [(0,)]
                ),
                timeout=60,
            )
    finally:
        assert chaos.runner is not None
        await chaos.runner.cleanup()

    deliveries = query(db, "SELECT id, state, attempts FROM deliveries")
    assert len(deliveries) == EVENTS
    states = {state for _, state, _ in deliveries}
    assert states <= {"delivered", "dead"}
    for delivery_id, state, attempts in deliveries:
        answers = chaos.seen[delivery_id]
        logged = query(
            db,
            "SELECT status, outcome FROM attempts WHERE delivery_id = ? ORDER BY number",
            (delivery_id,),
        )
        assert len(logged) == len(answers) == attempts, (delivery_id, answers, logged)
        for answer, (status, _) in zip(answers, logged, strict=True):
            expected = int(answer) if answer.isdigit() else None  # hang, reset: no response
            assert status == expected, (delivery_id, answers, logged)
        if state == "delivered":
            assert answers[-1] == "200"
            assert logged[-1][1] == "delivered"
        else:
            assert "200" not in answers
            assert len(answers) == MAX_ATTEMPTS
            assert logged[-1][1] == "dead"
