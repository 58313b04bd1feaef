"""The operators' views agree with `relay stats` on the same data (issue 15: the view
v_destination_health counted replayed dead deliveries as dead, `relay stats` did not)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from relay.records import Action, AttemptRecord, NewEvent, ReplaySelection
from relay.sections import StorageConfig
from relay.store import open_store
from tests.helpers import query
from tests.process import run_cli


def _event(n: int, destinations: tuple[str, ...]) -> NewEvent:
    now = time.time()
    return NewEvent(
        id=f"evt_{n:04d}",
        source="s" if n % 2 else "t",
        received_at=now - 100 + n,
        idempotency_key=None,
        event_type="x",
        content_type=None,
        remote_addr=None,
        headers="[]",
        body=b"{}",
        destinations=destinations,
    )


async def test_views_agree_with_relay_stats(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    store = await open_store(StorageConfig(path=db))
    store.start()
    try:
        for n in range(12):
            await store.ingest(_event(n, ("a", "b") if n % 3 else ("a",)))
        now = time.time()
        claims = await store.claim("a", now, 8, lease=30)
        for i, claim in enumerate(claims):
            state = ("delivered", "dead", "pending")[i % 3]
            await store.record(
                AttemptRecord(
                    claim.id, 1, now, 1.0, 200, None, None, state, now + 60, now, claim.lease
                )
            )
        dead = [c.id for i, c in enumerate(claims) if i % 3 == 1]
        [target] = await store.read(
            lambda r: r.replay_targets(ReplaySelection(deliveries=tuple(dead[:1])))
        )
        await store.replay([target], Action("test", None, "replay"), False, now)  # one replayed
        await store.set_paused("b", True, "operator")
    finally:
        await store.close()
    result = run_cli("stats", "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)["destinations"]
    rows = query(
        db,
        "SELECT destination, pending, dead, delivered_last_hour, paused,"
        " oldest_pending_seconds FROM v_destination_health ORDER BY destination",
    )
    assert [r[0] for r in rows] == sorted(stats) == ["a", "b"]
    for name, pending, dead_count, delivered, paused, oldest in rows:
        s = stats[name]
        assert (pending, dead_count, delivered, bool(paused)) == (
            s["pending"],
            s["dead"],
            s["delivered_last_hour"],
            s["paused"],
        ), name
        assert abs(oldest - s["oldest_pending_seconds"]) <= 1  # whole seconds, read apart
    assert stats["a"]["dead"] == len(dead) - 1  # one of them was replayed
    v_dead = query(db, "SELECT COUNT(*) FROM v_dead WHERE NOT replayed")
    assert v_dead == [(stats["a"]["dead"] + stats["b"]["dead"],)]
    v_events = query(db, "SELECT SUM(pending), SUM(delivered) FROM v_events")
    assert v_events == [
        (
            sum(s["pending"] for s in stats.values()),
            sum(c for (c,) in query(db, "SELECT COUNT(*) FROM deliveries WHERE state='delivered'")),
        )
    ]
