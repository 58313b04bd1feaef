"""The overview for an operator who got paged (issue 20): each destination judged from its
own numbers in the per-minute rollup, with what needs attention first, linked to the list
that shows it. Chromium via Playwright, a real relay, a real SQLite file, real receivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for
from tests.test_console import TOKEN, browser, needs_chromium
from tests.test_console_dead import _signed_in

__all__ = ["browser"]  # the fixture, used by name


@needs_chromium
async def test_the_overview_marks_dying_and_growing_destinations_and_links_to_them(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession, browser: Any
) -> None:
    db = tmp_path / "relay.db"
    billing, analytics = Receiver(default=422), Receiver(default="hang")
    await billing.start()
    await analytics.start()
    destinations = [
        {"name": "app", "url": receiver.url},
        {"name": "billing", "url": billing.url, "retry": {"max_attempts": 1}},
        # One delivery at a time to a receiver that never answers: the backlog grows.
        {"name": "analytics", "url": analytics.url, "timeout": 30.0, "max_concurrency": 1},
    ]
    settings = settings_for(
        db,
        receiver.url,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        destinations=destinations,
        routes=[{"source": "demo", "destinations": ["app", "billing", "analytics"]}],
    )
    try:
        async with running(settings) as relay:
            for i in range(8):
                status, _, _ = await post(client, relay.port, BODY_JSON, key=f"k{i}")
                assert status == 200
            await wait_for(
                lambda: (
                    query(
                        db,
                        "SELECT destination, state, COUNT(*) FROM deliveries"
                        " GROUP BY destination, state ORDER BY destination",
                    )
                    == [
                        ("analytics", "pending", 8),
                        ("app", "delivered", 8),
                        ("billing", "dead", 8),
                    ]
                )
            )
            base = f"http://{relay.admin_address}"
            page = await _signed_in(browser, base)
            rows = page.locator("tr[data-destination]")
            classes = {
                await r.get_attribute("data-destination"): await r.get_attribute("class")
                for r in await rows.all()
            }
            assert classes == {"app": "ok", "billing": "bad", "analytics": "warn"}
            strip = page.locator("ul.attention li")
            assert await strip.count() == 2
            assert "destination billing" in await strip.nth(0).inner_text()  # worst first
            assert "failing since" in await strip.nth(0).inner_text()  # its incident: why, since
            assert "HTTP 4xx (HTTP 422 answer 422)" in await strip.nth(0).inner_text()
            assert "backlog 8 growing" in await strip.nth(1).inner_text()

            # The dying one's link: its dead letters of the last hour, and only those.
            await strip.nth(0).get_by_role("link").click()
            await page.get_by_role("heading", name="Dead letters").wait_for()
            assert "destination=billing" in page.url
            await page.locator("#matching", has_text="8 dead matching").wait_for()
            died = await page.locator("table.deadlist tbody tr td.destination").all_inner_texts()
            assert died == ["billing"] * 8

            # The growing one's link: its pending events.
            await page.goto(base + "/ui/")
            await page.locator("ul.attention li").nth(1).get_by_role("link").click()
            await page.get_by_role("heading", name="Events").wait_for()
            assert "destination=analytics" in page.url
            assert "status=pending" in page.url
            assert await page.locator("table tbody tr").count() == 8
    finally:
        await billing.stop()
        await analytics.stop()
