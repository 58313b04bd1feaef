"""Post a list of requests to a real relay with one source, and check each answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import Receiver, query, running, settings_for, wait_for


@dataclass
class Case:
    """One request and what relay must answer to it."""

    name: str
    headers: dict[str, str]
    body: bytes
    status: int
    query: str = ""  # without '?'
    method: str = "POST"
    answer: bytes | None = None  # the exact response body, for handshakes
    forwarded: bool = False  # a new event: it must reach the receiver


@dataclass
class Result:
    db: Path
    statuses: dict[str, int] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)

    def events(self) -> list[tuple[Any, ...]]:
        """(idempotency_key, event_type, occurred_at) of stored events, in arrival order."""
        return query(
            self.db,
            "SELECT idempotency_key, event_type, occurred_at FROM events ORDER BY rowid",
        )

    def rejections(self) -> list[tuple[Any, ...]]:
        return query(self.db, "SELECT status, reason, headers FROM rejections ORDER BY id")


async def run_cases(
    tmp_path: Path,
    receiver: Receiver,
    client: aiohttp.ClientSession,
    source: dict[str, Any],
    cases: list[Case],
    **overrides: Any,
) -> Result:
    """Start relay with ``source`` as 'demo', send every case in order, assert each status
    and answer, and wait until every forwarded case reached the receiver."""
    result = Result(tmp_path / "relay.db")
    settings = settings_for(result.db, receiver.url, only_source=source, **overrides)
    async with running(settings) as relay:
        base = f"http://127.0.0.1:{relay.port}/in/demo"
        for case in cases:
            url = f"{base}?{case.query}" if case.query else base
            data = case.body if case.method == "POST" else None
            async with client.request(case.method, url, data=data, headers=case.headers) as r:
                result.statuses[case.name] = r.status
                result.bodies[case.name] = await r.read()
                result.content_types[case.name] = r.content_type
        expected = sum(1 for case in cases if case.forwarded)
        await wait_for(lambda: len(receiver.received) >= expected)
    assert result.statuses == {case.name: case.status for case in cases}
    for case in cases:
        if case.answer is not None:
            assert result.bodies[case.name] == case.answer, case.name
    assert len(receiver.received) == sum(1 for case in cases if case.forwarded)
    return result
