"""Dead letters at scale in the console (issue 20): a filter with From and Until on the time
they died, replaying exactly the matching ones, and pages through 10,000 of them. Chromium
via Playwright, a real relay and a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp

from relay.store import open_store
from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for
from tests.test_console import TOKEN, _cookie, _sign_in, browser, console_settings

__all__ = ["browser"]  # the fixture, used by name


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _signed_in(browser: Any, base: str) -> Any:
    page = await (await browser.new_context()).new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(base + "/ui/login")
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Overview").wait_for()
    return page


async def test_yesterdays_dead_of_one_destination_are_found_and_replayed_exactly(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession, browser: Any
) -> None:
    db = tmp_path / "relay.db"
    receiver.default = 422  # every delivery dies
    retry = {"max_attempts": 1}
    settings = settings_for(
        db,
        receiver.url,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        destinations=[
            {"name": name, "url": receiver.url, "timeout": 2.0, "retry": retry}
            for name in ("app", "ledger")
        ],
        routes=[{"source": "demo", "destinations": ["app", "ledger"]}],
    )
    async with running(settings) as relay:
        for i in range(6):
            status, _, _ = await post(client, relay.port, BODY_JSON, key=f"k{i}")
            assert status == 200
        await wait_for(lambda: query(db, "SELECT COUNT(*) FROM v_dead") == [(12,)])
        # Three of each destination died "yesterday" (26 to 30 hours ago), the rest now.
        now = time.time()
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            for destination in ("app", "ledger"):
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM deliveries WHERE destination = ? ORDER BY id LIMIT 3",
                        (destination,),
                    )
                ]
                for n, delivery in enumerate(ids):
                    conn.execute(
                        "UPDATE deliveries SET updated_at = ? WHERE id = ?",
                        (now - 26 * 3600 - n * 3600, delivery),
                    )
        yesterday = [
            r[0]
            for r in query(
                db,
                "SELECT id FROM deliveries WHERE destination = 'app' AND updated_at < ?",
                (now - 24 * 3600,),
            )
        ]
        assert len(yesterday) == 3
        page = await _signed_in(browser, f"http://{relay.admin_address}")
        await page.goto(f"http://{relay.admin_address}/ui/dead")
        await page.get_by_role("textbox", name="Destination").fill("app")
        await page.get_by_role("textbox", name="From").fill(_iso(now - 48 * 3600))
        await page.get_by_role("textbox", name="Until").fill(_iso(now - 24 * 3600))
        await page.get_by_role("button", name="Filter").click()
        await page.locator("#matching", has_text="3 dead matching").wait_for()
        shown = {
            int(v)
            for v in await page.locator("input[name=delivery]").evaluate_all(
                "els => els.map(e => e.value)"
            )
        }
        assert shown == set(yesterday)
        await page.get_by_role("button", name="Replay the 3 matching").click()
        await page.get_by_role("status").wait_for()
        assert await page.get_by_role("status").inner_text() == "Replayed 3 deliveries."
    replayed = query(db, "SELECT replay_of FROM deliveries WHERE replay_of IS NOT NULL")
    assert sorted(r[0] for r in replayed) == sorted(yesterday)  # count shown = count replayed


def _fill_dead(db: Path, count: int) -> None:
    now = time.time()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany(
            "INSERT INTO events (id, source, received_at, headers, body) VALUES (?, 'demo', ?,"
            " '[]', X'7b7d')",
            [(f"evt_{n:026d}", now - count + n) for n in range(count)],
        )
        conn.executemany(
            "INSERT INTO deliveries (event_id, destination, state, attempts, next_attempt_at,"
            " created_at, updated_at, last_error)"
            " VALUES (?, 'app', 'dead', 1, ?, ?, ?, 'HTTP 500')",
            [(f"evt_{n:026d}", now, now, now - count + n) for n in range(count)],
        )


async def test_paging_through_ten_thousand_dead_letters(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession, browser: Any
) -> None:
    db = tmp_path / "relay.db"
    settings = console_settings(db, receiver)
    store = await open_store(settings.storage)  # the schema, then 10,000 dead deliveries
    await store.close()
    _fill_dead(db, 10_000)
    async with running(settings) as relay:
        base = f"http://{relay.admin_address}"
        # Every page, by the "Older" link, over HTTP: each dead delivery exactly once.
        _, _, raw = await _sign_in(client, base)
        cookie = _cookie(raw)
        seen: list[int] = []
        url: str | None = base + "/ui/dead"
        pages = 0
        while url is not None and pages < 250:
            async with client.get(url, headers=cookie) as r:
                html = await r.text()
            seen += [int(v) for v in re.findall(r'name="delivery" value="(\d+)"', html)]
            older = re.search(r'href="(/ui/dead\?[^"]+)" rel="next"', html)
            url = base + older.group(1).replace("&amp;", "&") if older else None
            pages += 1
        assert pages == 200
        assert len(seen) == len(set(seen)) == 10_000
        assert seen == sorted(seen, reverse=True)
        # And in the browser: the count, then two pages back.
        page = await _signed_in(browser, base)
        await page.goto(base + "/ui/dead")
        await page.locator("#matching", has_text="10000 dead").wait_for()
        first = await page.locator("input[name=delivery]").first.get_attribute("value")
        for _ in range(2):
            await page.get_by_role("link", name="Older dead deliveries").click()
            await page.locator("input[name=delivery]").first.wait_for()
        now_first = await page.locator("input[name=delivery]").first.get_attribute("value")
        assert int(first or 0) - int(now_first or 0) == 100


async def test_a_pending_delivery_shows_its_next_attempt_and_the_whole_response(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """Issue 20: the attempt view cut the response at 200 characters and did not say when
    a pending delivery would be tried again."""
    from aiohttp import web

    answer = "upstream is down: " + "x" * 300 + " END"

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=503, text=answer)

    app = web.Application()
    app.router.add_post("/hook", failing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    db = tmp_path / "relay.db"
    settings = settings_for(
        db,
        f"http://127.0.0.1:{port}/hook",
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        retry={"max_attempts": 5, "base": 600, "cap": 600, "jitter": 0},
    )
    try:
        async with running(settings) as relay:
            _, headers, _ = await post(client, relay.port, BODY_JSON, key="p1")
            event = headers["X-Relay-Event-Id"]
            await wait_for(lambda: query(db, "SELECT COUNT(*) FROM attempts") == [(1,)])
            base = f"http://{relay.admin_address}"
            _, _, raw = await _sign_in(client, base)
            async with client.get(f"{base}/ui/events/{event}", headers=_cookie(raw)) as r:
                html = await r.text()
    finally:
        await runner.cleanup()
    assert re.search(r"Next attempt \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in (9|10) min\)", html)
    assert "http-equiv" not in html  # the page itself is not reloaded (issue 29) …
    assert f'data-refresh-parts="/ui/events/{event}?fragment=deliveries"' in html  # … its states
    assert "x" * 300 + " END" in html  # the stored response, not its first 200 characters


async def test_an_attempt_keeps_the_response_headers_and_as_much_body_as_configured(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """Issue 20: the attempt view showed no response headers, and the body was cut at 512
    bytes whatever the destination. keep_response sets how much; headers are kept with
    secrets redacted."""
    from aiohttp import web

    answer = "validation failed: " + "y" * 2000

    async def refusing(request: web.Request) -> web.Response:
        headers = {"X-Upstream": "db-01", "Set-Cookie": "session=s3cr3t"}
        return web.Response(status=422, text=answer, headers=headers)

    app = web.Application()
    app.router.add_post("/hook", refusing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    db = tmp_path / "relay.db"
    settings = settings_for(
        db,
        f"http://127.0.0.1:{port}/hook",
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        retry={"max_attempts": 1},
        destination={"keep_response": 1500},
    )
    try:
        async with running(settings) as relay:
            _, headers, _ = await post(client, relay.port, BODY_JSON, key="h1")
            event = headers["X-Relay-Event-Id"]
            await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("dead",)])
            base = f"http://{relay.admin_address}"
            _, _, raw = await _sign_in(client, base)
            async with client.get(f"{base}/ui/events/{event}", headers=_cookie(raw)) as r:
                html = await r.text()
    finally:
        await runner.cleanup()
    [(excerpt, stored)] = query(db, "SELECT response_excerpt, response_headers FROM attempts")
    assert excerpt == answer[:1500]
    kept = dict(json.loads(stored))
    assert kept["X-Upstream"] == "db-01"
    assert kept["Set-Cookie"] == "[redacted]"
    assert "<th scope=row>X-Upstream</th><td>db-01</td>" in html
    assert "s3cr3t" not in html
    assert answer[:1500] in html
