"""Retention against a real relay: old finished events go, pending ones stay, bodies are
redacted after delivery; and the dashboard only names metrics relay exports."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import aiohttp

from relay.admin import Who
from relay.metrics import Metrics
from relay.retention import Pruner
from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for

ROOT = Path(__file__).resolve().parent.parent


async def test_pruning_and_redaction(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    receiver.script = [200, 200, 422]  # two delivered, one dead
    retention = {
        "delivered_after": 3600,
        "dead_after": 7200,
        "rejections_after": 3600,
        "redact_after": 0,
        "interval": 3600,  # the test runs it by hand
    }
    settings = settings_for(db, receiver.url, retention=retention)
    async with running(settings) as relay:
        for key in ("a", "b", "c"):
            await post(client, relay.port, BODY_JSON, key=key)
        await wait_for(lambda: len(receiver.received) == 3)
        await relay.scheduler.pause("app")
        await post(client, relay.port, BODY_JSON, key="pending")
        await post(client, relay.port, BODY_JSON, key="bad", signature="sha256=00")
        await wait_for(lambda: query(db, "SELECT COUNT(*) FROM rejections") == [(1,)])
        # Redaction now (redact_after = 0); nothing is old enough to delete yet.
        assert relay.control is not None
        first = await relay.control.prune(Who("test", None))
        assert first == {"delivered": 0, "dead": 0, "rejections": 0, "redacted": 2}
        redacted = query(
            db, "SELECT idempotency_key, length(body) FROM events WHERE redacted_at IS NOT NULL"
        )
        assert sorted(redacted) == [("a", 0), ("b", 0)]
        # Two hours later: delivered and dead events, and the rejection, go; pending stays.
        later = time.time() + 7201
        counts = await Pruner(relay.settings.retention, relay.store).prune_once(later)
    assert counts == {"delivered": 2, "dead": 1, "rejections": 1, "redacted": 0}
    assert query(db, "SELECT idempotency_key FROM events") == [("pending",)]
    assert query(db, "SELECT COUNT(*) FROM attempts") == [(0,)]  # gone with their events
    assert query(db, "SELECT state FROM deliveries") == [("pending",)]


def test_dashboard_names_only_exported_metrics() -> None:
    exported = {m.name for m in Metrics().registry.collect()}
    text = (ROOT / "docs" / "grafana-dashboard.json").read_text()
    dashboard = json.loads(text)
    named = set(re.findall(r"relay_[a-z_]+", text))
    assert named
    for name in named:
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert base in exported, name
    assert len(dashboard["panels"]) >= 10
