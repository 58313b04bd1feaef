"""The web console in real headless Chromium (Debian's, driven by Playwright): sign in, see
a just-posted event, open it, replay a dead delivery and see it delivered, pause a
destination. Also its cookie and CSRF rules, checked without a browser."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for

TOKEN = "console-test-token"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    if CHROMIUM is None:
        # make test installs it as root and stops without it otherwise: a missing chromium
        # is a broken setup, not a reason to pass the console's tests unseen.
        pytest.fail("Debian's chromium is missing: make browser (as root) installs it")
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
        assert page.url.endswith("/ui/login?next=/ui/")  # no session: sign in first
        await page.get_by_label("Admin token").fill("wrong")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("alert").wait_for()
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.keyboard.press("Enter")  # keyboard only
        await page.get_by_role("heading", name="Overview").wait_for()
        cookie = next(c for c in await context.cookies() if c["name"] == "relay_session")
        assert cookie["httpOnly"] is True
        assert cookie["secure"] is False  # plain HTTP on loopback: see the TLS tests below
        assert cookie["sameSite"] == "Strict"

        # The just-posted event is listed; open it.
        await page.get_by_role("link", name="Events").click()
        await page.get_by_role("link", name=fresh_id).click()
        await page.get_by_role("heading", name=fresh_id).wait_for()
        assert (
            "order.created"
            in await page.locator("section[aria-labelledby=bd] pre").first.inner_text()
        )

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
                assert r.headers["Location"] == "/ui/login?next=/ui/dead"
            async with session.post(
                base + "/ui/login", data={"token": TOKEN}, allow_redirects=False
            ) as r:
                assert r.status == 303
                raw = r.headers["Set-Cookie"]
            assert "HttpOnly" in raw
            assert "Secure" not in raw  # plain HTTP on loopback
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


async def _sign_in(
    session: aiohttp.ClientSession, base: str, token: str = TOKEN, **extra: Any
) -> tuple[int, str, str]:
    """POST the sign-in form: (status, Location, Set-Cookie)."""
    async with session.post(
        base + "/ui/login", data={"token": token}, allow_redirects=False, **extra
    ) as r:
        return r.status, r.headers.get("Location", ""), r.headers.get("Set-Cookie", "")


def _cookie(raw: str) -> dict[str, str]:
    found = re.search(r"relay_session=([^;]+)", raw)
    assert found is not None, raw
    return {"Cookie": f"relay_session={found.group(1)}"}


async def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 14: after sign-out a copied cookie still worked for up to 12 h."""
    async with running(console_settings(tmp_path / "relay.db", receiver)) as relay:
        base = f"http://{relay.admin_address}"
        _, _, raw = await _sign_in(client, base)
        copy = _cookie(raw)
        async with client.get(base + "/ui/events", headers=copy, allow_redirects=False) as r:
            assert r.status == 200
        html = await (await client.get(base + "/ui/events", headers=copy)).text()
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
        assert csrf is not None
        async with client.post(
            base + "/ui/logout",
            data={"csrf": csrf.group(1)},
            headers=copy,
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with client.get(base + "/ui/events", headers=copy, allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"].startswith("/ui/login")


async def test_wrong_tokens_are_slowed_and_the_right_one_always_gets_in(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 14: after 5 wrong tries the right token was refused too, for everyone behind
    the same address. Now wrong ones wait longer each time and the right one is let in."""
    async with running(console_settings(tmp_path / "relay.db", receiver)) as relay:
        base = f"http://{relay.admin_address}"
        waits = []
        for _ in range(6):
            started = asyncio.get_running_loop().time()
            status, location, raw = await _sign_in(client, base, token="guess")
            waits.append(asyncio.get_running_loop().time() - started)
            assert (status, raw) == (303, "")
            assert "error=wrong" in location
        status, location, raw = await _sign_in(client, base)
    assert (status, location) == (303, "/ui/")
    assert "relay_session=" in raw
    assert waits[-1] >= 2.0  # the sixth wrong try waited (0.5, 1, 2 s after the third)


async def test_sign_in_needs_a_private_connection(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """A trusted proxy that forwarded plain HTTP from elsewhere: refused, saying what to do;
    one that says https: a Secure cookie. Straight from loopback: a cookie without Secure
    (browsers may drop Secure cookies over http://localhost)."""
    settings = settings_for(
        tmp_path / "relay.db",
        receiver.url,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        server={"trusted_proxies": ["127.0.0.1/32"]},
    )
    async with running(settings) as relay:
        base = f"http://{relay.admin_address}"
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        plain = {**forwarded, "X-Forwarded-Proto": "http"}
        status, location, raw = await _sign_in(client, base, headers=plain)
        assert (status, raw) == (303, "")
        assert "error=insecure" in location
        async with client.get(base + "/ui/login", headers=plain) as r:
            assert "SSH tunnel" in await r.text()  # said before the token is typed
        tls = {**forwarded, "X-Forwarded-Proto": "https"}
        status, location, raw = await _sign_in(client, base, headers=tls)
        assert (status, location) == (303, "/ui/")
        assert "Secure" in raw
        status, _, raw = await _sign_in(client, base)
        assert status == 303
        assert "relay_session=" in raw
        assert "Secure" not in raw


async def test_admin_listener_over_tls(tmp_path: Path, receiver: Receiver) -> None:
    """[admin.tls]: the console and the API over HTTPS, with a Secure cookie."""
    cert, key, context = _self_signed(tmp_path)
    settings = settings_for(
        tmp_path / "relay.db",
        receiver.url,
        admin={
            "listen": "127.0.0.1:0",
            "token": TOKEN,
            "tls": {"cert_file": str(cert), "key_file": str(key)},
        },
    )
    async with running(settings) as relay, aiohttp.ClientSession() as session:
        base = f"https://localhost:{relay.admin_address.rsplit(':', 1)[1]}"
        status, location, raw = await _sign_in(session, base, ssl=context)
        assert (status, location) == (303, "/ui/")
        assert "Secure" in raw
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with session.get(base + "/api/stats", headers=bearer, ssl=context) as r:
            assert r.status == 200


def _self_signed(tmp_path: Path) -> tuple[Path, Path, ssl.SSLContext]:
    from tests.certs import make_ca, make_leaf

    ca = make_ca(tmp_path, "admin CA")
    cert, key = make_leaf(tmp_path, ["localhost"], ca, "admin")
    return cert, key, ssl.create_default_context(cafile=str(ca[0]))


async def test_an_ended_session_sends_the_browser_to_sign_in_and_back(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession, browser: Any
) -> None:
    """Issue 14: when the session ended, the overview's 5-second refresh put the sign-in
    page inside the overview. Now the browser goes to sign-in, and back afterwards."""
    async with running(console_settings(tmp_path / "relay.db", receiver)) as relay:
        base = f"http://{relay.admin_address}"
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(base + "/ui/dead")  # no session: sign in, then back to this page
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.keyboard.press("Enter")
        await page.get_by_role("heading", name="Dead letters").wait_for()
        await page.get_by_role("link", name="Overview").click()
        await page.get_by_role("heading", name="Overview").wait_for()
        cookie = next(c for c in await context.cookies() if c["name"] == "relay_session")
        other = await browser.new_context()  # sign out elsewhere: the session ends
        await other.add_cookies([cookie])
        elsewhere = await other.new_page()
        await elsewhere.goto(base + "/ui/")
        await elsewhere.get_by_role("button", name="Sign out").click()
        await other.close()
        await page.wait_for_url("**/ui/login?next=%2Fui%2F", timeout=15_000)
        assert await page.locator("main h1").inner_text() == "relay"  # the sign-in page
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.keyboard.press("Enter")
        await page.get_by_role("heading", name="Overview").wait_for()
        assert await page.locator("#token").count() == 0  # no sign-in form in the page
        await context.close()


async def test_replay_forms_replay_once_and_replay_all_never_more_than_shown(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession, browser: Any
) -> None:
    """Issue 16: a second click on "Replay to app" after a replay, "Replay selected" from two
    tabs and "Replay all 517" (which replayed 9,234) each doubled or overshot."""
    db = tmp_path / "relay.db"
    receiver.default = 422  # every delivery dies, replays too
    async with running(console_settings(db, receiver)) as relay:
        base = f"http://{relay.admin_address}"
        ids = []
        for i in range(3):
            _, headers, _ = await post(client, relay.port, BODY_JSON, key=f"d{i}")
            ids.append(headers["X-Relay-Event-Id"])
        await wait_for(lambda: query(db, "SELECT COUNT(*) FROM v_dead") == [(3,)])
        context = await browser.new_context()
        page = await context.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.goto(base + "/ui/login")
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.keyboard.press("Enter")
        await page.get_by_role("heading", name="Overview").wait_for()

        def replays(event: str) -> int:
            rows = query(
                db,
                "SELECT COUNT(*) FROM deliveries WHERE event_id = ? AND replay_of IS NOT NULL",
                (event,),
            )
            return int(rows[0][0])

        # The same form sent twice (as a double click or a reload-and-resubmit sends it):
        # replayed once; and once replayed, that dead delivery's button is gone.
        original = query(db, "SELECT id FROM deliveries WHERE event_id = ?", (ids[0],))[0][0]
        await page.goto(f"{base}/ui/events/{ids[0]}")
        form = page.locator("form[action='/ui/replay']").first
        fields = {
            name: await form.locator(f"input[name={name}]").get_attribute("value") or ""
            for name in ("csrf", "request", "delivery", "back")
        }
        answers = []
        for _ in range(2):
            response = await page.request.post(base + "/ui/replay", form=fields)
            answers.append(await response.text())
        assert "Replayed 1 delivery." in answers[0]
        assert "Already replayed" in answers[1]
        assert replays(ids[0]) == 1
        await page.reload()
        assert await page.locator(f'input[name=delivery][value="{original}"]').count() == 0

        # Two tabs, the same delivery selected in each: one replay.
        await wait_for(
            lambda: query(db, "SELECT COUNT(*) FROM v_dead WHERE NOT replayed") == [(3,)]
        )
        tabs = [page, await context.new_page()]
        tabs[1].on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        target = query(
            db, "SELECT id FROM deliveries WHERE event_id = ? AND replay_of IS NULL", (ids[1],)
        )[0][0]
        for tab in tabs:
            await tab.goto(base + "/ui/dead")
            await tab.locator(f"#d{target}").check()
        for tab in tabs:
            await tab.get_by_role("button", name="Replay selected").click()
            await tab.get_by_role("status").wait_for()
        assert replays(ids[1]) == 1

        # "Replay all N" replays the N it showed: one that died after the page was shown is
        # not among them; and if some of the N were replayed meanwhile, it says so and
        # replays nothing.
        receiver.default = 200  # replays are delivered from here on
        unreplayed = "SELECT COUNT(*) FROM v_dead WHERE NOT replayed"
        await wait_for(
            lambda: query(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'") == [(0,)]
        )
        shown = int(query(db, unreplayed)[0][0])
        await page.goto(base + "/ui/dead")
        button = page.get_by_role("button", name=f"Replay all {shown}")
        receiver.script = [422]
        await post(client, relay.port, BODY_JSON, key="late")  # dies after the page was shown
        await wait_for(lambda: query(db, unreplayed) == [(shown + 1,)])
        before = query(db, "SELECT COUNT(*) FROM deliveries")[0][0]
        await button.click()
        await page.get_by_role("status").wait_for()
        assert f"Replayed {shown} deliveries" in await page.get_by_role("status").inner_text()
        assert query(db, "SELECT COUNT(*) FROM deliveries")[0][0] == before + shown
        assert query(db, unreplayed) == [(1,)]  # the late one waits for its own replay

        await page.goto(base + "/ui/dead")
        stale = page.get_by_role("button", name="Replay all 1")
        await tabs[1].goto(base + "/ui/dead")  # meanwhile, another tab replays it
        await tabs[1].locator("input[name=delivery]").first.check()
        await tabs[1].get_by_role("button", name="Replay selected").click()
        await tabs[1].get_by_role("status").wait_for()
        before = query(db, "SELECT COUNT(*) FROM deliveries")[0][0]
        await stale.click()
        await page.get_by_role("status").wait_for()
        said = await page.get_by_role("status").inner_text()
        assert "Not replayed: 0 match now, not the 1 shown" in said
        assert query(db, "SELECT COUNT(*) FROM deliveries")[0][0] == before
        await context.close()


async def test_the_console_shows_only_its_own_notices_whatever_a_link_says(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 29: ?error= on the sign-in page and ?done= on any page showed whatever text a
    link carried. Now a code from a fixed table is shown, and nothing else."""
    settings = console_settings(tmp_path / "relay.db", receiver)
    crafted = "Session expired, call +1 555 0100 to restore access"
    async with running(settings) as relay:
        base = f"http://{relay.admin_address}"
        async with client.get(base + "/ui/login", params={"error": crafted}) as r:
            page = await r.text()
        assert "555 0100" not in page
        async with client.get(base + "/ui/login", params={"error": "wrong"}) as r:
            assert "That token is not right." in await r.text()
        _, _, raw = await _sign_in(client, base)
        cookie = _cookie(raw)
        for query in (
            {"done": crafted},
            {"done": "replayed", "n": "3 deliveries; call +1 555 0100"},
            {"done": "paused", "destination": crafted},
        ):
            async with client.get(base + "/ui/destinations", params=query, headers=cookie) as r:
                text = await r.text()
                assert r.status == 200
                assert "555 0100" not in text
                assert 'class="notice"' not in text
        shown = {"done": "paused", "destination": "app"}
        async with client.get(base + "/ui/destinations", params=shown, headers=cookie) as r:
            assert "app paused." in await r.text()


async def test_relays_own_event_id_or_its_start_finds_the_event(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 29: relay's event id typed into Key or Text found nothing."""
    settings = console_settings(tmp_path / "relay.db", receiver)
    async with running(settings) as relay:
        _, headers, _ = await post(client, relay.port, BODY_JSON, key="find-me")
        event = headers["X-Relay-Event-Id"]
        base = f"http://{relay.admin_address}"
        _, _, raw = await _sign_in(client, base)
        cookie = _cookie(raw)
        for query in ({"q": event}, {"key": event}, {"q": event[:16]}, {"q": event[:16] + "…"}):
            async with client.get(
                base + "/ui/events", params=query, headers=cookie, allow_redirects=False
            ) as r:
                assert (r.status, r.headers.get("Location")) == (303, f"/ui/events/{event}")
        async with client.get(base + "/ui/events", params={"key": "find-me"}, headers=cookie) as r:
            assert event in await r.text()  # the idempotency key still searches as before


async def test_the_event_page_refreshes_delivery_states_only_and_says_why_one_is_overdue(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession, browser: Any
) -> None:
    """Issue 29: the event page reloaded itself every 5 s while a delivery was pending, which
    closed an open "Copy as curl"; and a delivery overdue by minutes said "(in 0 s)". Now
    only the delivery states are fetched and replaced, and an overdue one says why."""
    db = tmp_path / "relay.db"
    async with running(console_settings(db, receiver)) as relay:
        base = f"http://{relay.admin_address}"
        await relay.scheduler.pause("app", "paused for the test")
        _, headers, _ = await post(client, relay.port, BODY_JSON, key="held")
        event = headers["X-Relay-Event-Id"]
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(base + "/ui/login")
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.keyboard.press("Enter")
        await page.get_by_role("heading", name="Overview").wait_for()
        await page.goto(f"{base}/ui/events/{event}")
        state = page.locator(".delivery .state").first
        assert await state.inner_text() == "pending"
        said = await page.locator(".delivery .next").first.inner_text()
        assert "overdue" in said
        assert "the destination is paused" in said
        await page.get_by_text("Copy as curl", exact=True).first.click()  # open it
        curl = page.locator("details.curl").first
        assert await curl.get_attribute("open") is not None
        await relay.scheduler.resume("app")
        await wait_for(lambda: len(receiver.received) == 1)
        async with page.expect_response(lambda r: "fragment=deliveries" in r.url, timeout=15_000):
            pass  # the next look at the states
        await page.wait_for_function(
            "() => document.querySelector('.delivery .state').textContent === 'delivered'",
            timeout=15_000,
        )
        assert await curl.get_attribute("open") is not None  # still open: no reload
        await context.close()


async def test_a_token_in_a_url_is_not_echoed_into_the_sign_in_redirect(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 29: GET /ui/dead?token=… without a session answered Location:
    /ui/login?next=/ui/dead?token=… (a token in a URL ends up in proxy and browser
    history). The console takes no token in a URL; the redirect keeps the rest."""
    settings = console_settings(tmp_path / "relay.db", receiver)
    async with running(settings) as relay:
        base = f"http://{relay.admin_address}"
        async with client.get(
            base + "/ui/dead",
            params={"token": TOKEN, "destination": "app"},
            allow_redirects=False,
        ) as r:
            location = r.headers["Location"]
        assert r.status == 303
        assert TOKEN not in location
        assert location == "/ui/login?next=/ui/dead?destination%3Dapp"
