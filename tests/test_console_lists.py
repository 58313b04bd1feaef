"""The console's lists beyond events and dead letters (issue 20), over HTTP with a session:
rejections and the audit trail with filters and keyset pages, dead letters grouped by type
with each group linking to its list, "Replay the N" on a filtered events list (count shown
= count replayed), the live tail's fragment, the alerts page; and `relay stats` over a
time range, as a table and as CSV, from the per-minute rollup."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path

import aiohttp

from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for
from tests.process import run_cli
from tests.test_console import TOKEN, _cookie, _sign_in


def _settings(db: Path, receiver: Receiver) -> object:
    return settings_for(
        db,
        receiver.url,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        destinations=[
            {"name": "app", "url": receiver.url, "retry": {"max_attempts": 1}},
            {"name": "ops", "url": receiver.url},  # where alerts go
        ],
        alerts={"destination": "ops", "backlog": 600},
    )


async def test_lists_filter_page_group_and_replay_exactly(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    receiver.default = 422  # every delivery dies
    async with running(_settings(db, receiver)) as relay:
        for i in range(6):
            kind = "invoice.paid" if i % 2 else "customer.updated"
            body = json.dumps({"type": kind, "n": i}).encode()
            status, _, _ = await post(client, relay.port, body, key=f"k{i}")
            assert status == 200
        for _ in range(60):  # refused: a wrong signature
            status, _, _ = await post(client, relay.port, BODY_JSON, signature="sha256=00")
            assert status == 401
        dead_at_app = "SELECT COUNT(*) FROM deliveries WHERE destination = 'app' AND state = 'dead'"
        await wait_for(lambda: query(db, dead_at_app) == [(6,)])
        await wait_for(lambda: query(db, "SELECT COUNT(*) FROM rejections") == [(60,)])
        base = f"http://{relay.admin_address}"
        _, _, raw = await _sign_in(client, base)
        cookie = _cookie(raw)

        async def page(path: str) -> str:
            async with client.get(base + path, headers=cookie) as r:
                assert r.status == 200, path
                return await r.text()

        # Rejections: 50 a page, then the rest; a source or a time range that matches none.
        first = await page("/ui/rejections?source=demo&since=1h")
        assert first.count("<tr><td>") == 50
        older = re.search(r'href="(/ui/rejections\?[^"]+)" rel="next"', first)
        assert older is not None
        second = await page(older.group(1).replace("&amp;", "&"))
        assert second.count("<tr><td>") == 10
        assert 'rel="next"' not in second
        assert "No rejected requests match" in await page("/ui/rejections?source=other")
        assert "No rejected requests match" in await page("/ui/rejections?until=2h")

        # Dead letters grouped by type: each group links to the list of exactly those.
        grouped = await page("/ui/dead?destination=app&group=type")
        links = dict(
            re.findall(r'<a href="(/ui/dead\?[^"]*type=[^"]+)">([^<]+)</a></td><td>3<', grouped)
        )
        assert sorted(links.values()) == ["customer.updated", "invoice.paid"]
        for link in links:
            listed = await page(link.replace("&amp;", "&"))
            assert "3 dead matching" in listed

        # Events: dead ones of one type, "Replay the 3"; the count shown is the count replayed.
        listed = await page("/ui/events?status=dead&type=invoice&destination=app")
        shown = re.search(r"(\d+) deliver(?:y|ies) of the matching events can be replayed", listed)
        assert shown is not None
        assert shown.group(1) == "3"
        block = re.search(
            r'<form method="post" action="/ui/replay" class="matching".*?</form>', listed, re.S
        )
        assert block is not None
        form = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', html.unescape(block.group(0))))
        async with client.post(
            base + "/ui/replay", data=form, headers=cookie, allow_redirects=False
        ) as r:
            assert r.status == 303
            assert "done=replayed&n=3" in r.headers["Location"]
        replayed = query(
            db,
            "SELECT e.event_type FROM deliveries d JOIN events e ON e.id = d.event_id"
            " WHERE d.replay_of IS NOT NULL",
        )
        assert replayed == [("invoice.paid",)] * 3
        # The same form again (a reload, a double click) replays nothing more.
        async with client.post(
            base + "/ui/replay", data=form, headers=cookie, allow_redirects=False
        ) as r:
            assert "done=changed&n=0" in r.headers["Location"]  # "Not replayed: 0 match now"
        assert query(db, "SELECT COUNT(*) FROM deliveries WHERE replay_of IS NOT NULL") == [(3,)]

        # The dead letters' key and text filters, and a replay of an events list by key.
        assert "3 dead matching" in await page("/ui/dead?destination=app&q=CUSTOMER")
        assert "1 dead matching" in await page("/ui/dead?destination=app&key=k0")
        by_key = await page("/ui/events?status=dead&destination=app&key=k4")
        block = re.search(
            r'<form method="post" action="/ui/replay" class="matching".*?</form>', by_key, re.S
        )
        assert block is not None
        form = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', html.unescape(block.group(0))))
        assert form["expect"] == "1"
        async with client.post(
            base + "/ui/replay", data=form, headers=cookie, allow_redirects=False
        ) as r:
            assert "done=replayed&n=1" in r.headers["Location"]
        again = query(
            db,
            "SELECT e.idempotency_key FROM deliveries d JOIN events e ON e.id = d.event_id"
            " WHERE d.replay_of IS NOT NULL AND e.event_type = 'customer.updated'",
        )
        assert again == [("k4",)]

        # The live tail's fragment: the table alone, newest first, with the same filter.
        tail = await page("/ui/tail?type=customer&fragment=1")
        assert "<html" not in tail
        assert tail.count("/ui/events/evt_") == 3
        assert "Follow live" in await page("/ui/events")

        # Alerts: the conditions in force, and the alerts sent (the dead deliveries').
        alerts = await page("/ui/alerts")
        assert "Alerts go to" in alerts
        assert "<strong>backlog</strong>" in alerts
        assert "alert.dead" in alerts

        # Audit: the replay, found by its action; sign-ins left out.
        audit = await page("/ui/audit?action=replay")
        assert audit.count("<td>replay</td>") == 2
        assert "sign-in" not in audit


async def test_stats_over_a_time_range_as_a_table_and_csv(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    receiver.script = [422, 422]  # two die, the rest are delivered
    async with running(_settings(db, receiver)) as relay:
        for i in range(5):
            status, _, _ = await post(client, relay.port, BODY_JSON, key=f"s{i}")
            assert status == 200
        await post(client, relay.port, BODY_JSON, signature="sha256=00")
        await wait_for(
            lambda: (
                query(
                    db,
                    "SELECT state, COUNT(*) FROM deliveries WHERE destination = 'app'"
                    " AND event_id IN (SELECT id FROM events WHERE source = 'demo')"
                    " GROUP BY state ORDER BY state",
                )
                == [("dead", 2), ("delivered", 3)]
            )
        )
    result = run_cli("stats", "--db", str(db), "--since", "10m", "--csv")
    assert result.returncode == 0, result.stderr
    rows = {(r["kind"], r["name"]): r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert (rows[("source", "demo")]["received"], rows[("source", "demo")]["rejected"]) == (
        "5",
        "1",
    )
    app = rows[("destination", "app")]
    assert (app["delivered"], app["died"]) == ("3", "2")
    assert float(app["p95_seconds"]) > 0
    table = run_cli("stats", "--db", str(db), "--since", "10m", "--until", "0s")
    assert table.returncode == 0, table.stderr
    assert "Counts: from " in table.stdout
    # A range before anything happened counts nothing.
    empty = run_cli("stats", "--db", str(db), "--since", "3h", "--until", "2h", "--json")
    data = json.loads(empty.stdout)
    assert data["sources"]["demo"]["received"] == 0
    assert data["destinations"]["app"]["delivered"] == 0
