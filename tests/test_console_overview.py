"""The overview for an operator who got paged (issue 20): each destination judged from its
own numbers in the per-minute rollup, with what needs attention first, linked to the list
that shows it. Chromium via Playwright, a real relay, a real SQLite file, real receivers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from relay.incidents import QUIET
from tests.helpers import (
    BODY_JSON,
    Receiver,
    SteppedClock,
    post,
    query,
    running,
    settings_for,
    wait_for,
)
from tests.test_console import TOKEN, browser
from tests.test_console_dead import _signed_in

__all__ = ["browser"]  # the fixture, used by name


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


async def test_an_outage_reads_as_one_incident_why_since_and_recovered(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession, browser: Any
) -> None:
    """Issue 33's operator on call, in a browser, on relay's clock moved by the test: app
    answers 500 for 3 minutes then recovers; billing answers 422; slow hangs. One alert
    when app's incident opens, at most one reminder, one `resolved` after the quiet
    period; the overview says why and since when while it fails, and "recovered at" (green)
    once it resolved, not an hour later. The 422's body and the timeout are told as theirs;
    the dead letters filtered to a destination link its incident and group by class."""
    db = tmp_path / "relay.db"
    receiver.default = (500, {})  # "answer 500": the receiver's own words
    billing, slow, ops = Receiver(default=422), Receiver(default="hang"), Receiver()
    for r in (billing, slow, ops):
        await r.start()
    once = {"max_attempts": 1}
    settings = settings_for(
        db,
        receiver.url,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        destinations=[
            {"name": "app", "url": receiver.url, "retry": once},
            {"name": "billing", "url": billing.url, "retry": once},
            {"name": "slow", "url": slow.url, "timeout": 0.5, "retry": once},
            {"name": "ops", "url": ops.url, "retry": once},
        ],
        routes=[{"source": "demo", "destinations": ["app", "billing", "slow"]}],
        alerts={"destination": "ops", "every": "2m"},
    )
    clock = SteppedClock()

    def alerts(about: str) -> list[dict[str, Any]]:
        said = [json.loads(r.body) for r in ops.received]
        return [a for a in said if a.get("destination") == about]

    def died(n: int) -> bool:
        found = query(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'dead'")
        return bool(found[0][0] == n)

    try:
        async with running(settings, clock) as relay:
            for minute in range(3):  # three minutes of failing, one event a minute
                status, _, _ = await post(client, relay.port, BODY_JSON, key=f"k{minute}")
                assert status == 200
                await wait_for(lambda m=minute: died(3 * (m + 1)), timeout=20)
                clock.advance(60)
            await wait_for(lambda: len(alerts("slow")) >= 1, timeout=20)
            base = f"http://{relay.admin_address}"
            page = await _signed_in(browser, base)
            row = page.locator("tr[data-destination=app]")
            assert await row.get_attribute("class") == "bad"
            why = await row.locator("a.why").inner_text()
            assert why.startswith("failing since ")
            assert "HTTP 5xx (HTTP 500 answer 500)" in why
            billing_why = page.locator("tr[data-destination=billing] a.why")
            assert "HTTP 4xx (HTTP 422 answer 422)" in await billing_why.inner_text()
            slow_why = await page.locator("tr[data-destination=slow] a.why").inner_text()
            assert slow_why.startswith("failing since "), slow_why
            assert ": timeout" in slow_why, slow_why

            # The dead letters of billing: its incident, linked; grouped by failure class.
            await page.goto(base + "/ui/dead?destination=billing&group=class")
            note = page.locator("p.incident")
            assert "failing since" in await note.inner_text()
            await page.locator("table.grouped tbody tr", has_text="HTTP 4xx").wait_for()
            classes = page.locator("table.grouped tbody tr")
            assert await classes.count() == 1  # every one of billing's died of a 422
            assert "\t3\t" in await classes.nth(0).inner_text()  # three of them
            await note.get_by_role("link").click()
            await page.get_by_role("heading", name="Incidents").wait_for()
            assert "#incident-" in page.url

            receiver.default = 200  # app recovered
            status, _, _ = await post(client, relay.port, BODY_JSON, key="after")
            assert status == 200
            await wait_for(lambda: len(receiver.received) == 4, timeout=20)
            clock.advance(QUIET + 1)  # quiet for the documented period
            await wait_for(lambda: alerts("app")[-1]["kind"] == "resolved", timeout=20)
            await page.goto(base + "/ui/")
            row = page.locator("tr[data-destination=app]")
            assert await row.get_attribute("class") == "ok"
            recovered = await row.locator("a.recovered").inner_text()
            assert recovered.startswith("recovered at ")
            assert recovered.endswith(", 3 left to replay"), recovered
    finally:
        for r in (billing, slow, ops):
            await r.stop()
    told = alerts("app")
    kinds = [(a["kind"], a["status"]) for a in told]
    assert kinds[0] == ("dead", "open")
    assert kinds[-1] == ("resolved", "resolved")
    assert len(kinds) <= 3, kinds  # at most one reminder between
    assert told[0]["failure_class"] == "HTTP 5xx"
    assert told[0]["sample"]["body"] == "answer 500"
    assert told[-1]["incident"] == told[0]["incident"]
    assert told[-1]["duration_seconds"] >= 120 + QUIET
