"""The web console in real headless Chromium (Debian's, driven by Playwright): sign in, see
a just-posted event, open it, replay a dead delivery and see it delivered, pause a
destination. Also its cookie and CSRF rules, checked without a browser."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for

TOKEN = "console-test-token"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Only a user who cannot install it may go without: as root, `make test` installs it, so a
# missing chromium is a broken setup and fails below instead of passing as a skip. (Other
# users run the suite as root of a private namespace: RELAY_TEST_UID is their real uid.)
REAL_UID = int(os.environ.get("RELAY_TEST_UID", os.geteuid()))
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and REAL_UID != 0,
    reason="Debian's chromium is not installed; `make test` installs it when run as root",
)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    if CHROMIUM is None:
        pytest.fail("chromium is missing although this runs as root: run `make browser`")
    async with async_playwright() as p:
        launched = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


def console_settings(db: Path, receiver: Receiver) -> Any:
    return settings_for(
        db,
        receiver.url,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        retry={"max_attempts": 1},
    )


@needs_chromium
async def test_console_in_a_browser(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession, browser: Any
) -> None:
    db = tmp_path / "relay.db"
    receiver.script = [422]  # the first event's delivery dies; later ones succeed
    async with running(console_settings(db, receiver)) as relay:
        base = f"http://{relay.admin_address}"
        status, headers, _ = await post(client, relay.port, BODY_JSON, key="first")
        assert status == 200
        dead_id = headers["X-Relay-Event-Id"]
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("dead",)])
        status, headers, _ = await post(client, relay.port, b'{"type": "order.created"}', key="k2")
        fresh_id = headers["X-Relay-Event-Id"]

        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(base + "/ui/")
        assert page.url.endswith("/ui/login")  # no session: sign in first
        await page.get_by_label("Admin token").fill("wrong")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("alert").wait_for()
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.keyboard.press("Enter")  # keyboard only
        await page.get_by_role("heading", name="Overview").wait_for()
        cookie = next(c for c in await context.cookies() if c["name"] == "relay_session")
        assert cookie["httpOnly"] is True
        assert cookie["secure"] is True
        assert cookie["sameSite"] == "Strict"

        # The just-posted event is listed; open it.
        await page.get_by_role("link", name="Events").click()
        await page.get_by_role("link", name=fresh_id).click()
        await page.get_by_role("heading", name=fresh_id).wait_for()
        assert "order.created" in await page.locator("pre").first.inner_text()

        # Replay the dead delivery from its event page and see it delivered.
        await page.goto(f"{base}/ui/events/{dead_id}")
        assert await page.locator(".delivery .state").first.inner_text() == "dead"
        await page.get_by_role("button", name="Replay to app").click()
        await page.get_by_role("status").wait_for()
        assert "Replayed 1 delivery." in await page.get_by_role("status").inner_text()

        def delivered() -> bool:
            rows = query(db, "SELECT state FROM deliveries WHERE event_id = ?", (dead_id,))
            return ("delivered",) in rows

        await wait_for(delivered)
        await page.reload()
        states = await page.locator(".delivery .state").all_inner_texts()
        assert states == ["dead", "delivered"]  # the history stays beside the replay

        # Pause the destination from its page.
        await page.get_by_role("link", name="Destinations").click()
        await page.get_by_role("button", name="Pause app").click()
        await page.get_by_role("status").wait_for()
        assert relay.scheduler.lanes["app"].paused is not None
        assert await page.get_by_role("button", name="Resume app").is_visible()

        # The dead-letter page works on a phone-sized screen too.
        phone = await browser.new_context(viewport={"width": 390, "height": 800})
        await phone.add_cookies([cookie])
        small = await phone.new_page()
        await small.goto(base + "/ui/dead")
        await small.get_by_role("heading", name="Dead letters").wait_for()
        width = await small.evaluate("document.documentElement.scrollWidth")
        assert width <= 400  # tables scroll inside their box, the page does not
        await phone.close()
        await context.close()


async def test_console_cookie_and_csrf_rules(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    async with running(console_settings(tmp_path / "relay.db", receiver)) as relay:
        base = f"http://{relay.admin_address}"
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            async with session.get(base + "/ui/dead", allow_redirects=False) as r:
                assert r.status == 303
                assert r.headers["Location"] == "/ui/login"
            async with session.post(
                base + "/ui/login", data={"token": TOKEN}, allow_redirects=False
            ) as r:
                assert r.status == 303
                raw = r.headers["Set-Cookie"]
            assert "HttpOnly" in raw
            assert "Secure" in raw
            assert "SameSite=Strict" in raw
            session_cookie = re.search(r"relay_session=([^;]+)", raw)
            assert session_cookie is not None
            headers = {"Cookie": f"relay_session={session_cookie.group(1)}"}
            async with session.get(base + "/ui/destinations", headers=headers) as r:
                assert r.status == 200
                html = await r.text()
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
            assert csrf is not None
            # An action without the form token is refused; with it, it works.
            url = base + "/ui/destinations/app/pause"
            async with session.post(url, data={}, headers=headers, allow_redirects=False) as r:
                assert r.status == 403
            assert relay.scheduler.lanes["app"].paused is None
            async with session.post(
                url, data={"csrf": csrf.group(1)}, headers=headers, allow_redirects=False
            ) as r:
                assert r.status == 303
            assert relay.scheduler.lanes["app"].paused is not None
            # The bearer token is not a console session, and the ingress never serves it.
            async with client.get(
                base + "/ui/", headers={"Authorization": f"Bearer {TOKEN}"}, allow_redirects=False
            ) as r:
                assert r.status == 303
            async with client.get(f"http://127.0.0.1:{relay.port}/ui/") as r:
                assert r.status == 404
