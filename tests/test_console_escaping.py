"""Every console page escapes what came from outside (issue 15): an event whose body,
header values, type and idempotency key carry markup (and a query string that does) is
shown as text on every page, never as markup. (Source and destination names cannot carry
any: the config allows only letters, digits, '.', '_' and '-'.) The pages are Jinja2
templates with autoescape; this checks the result, whatever the template says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp

from tests.helpers import Receiver, post, query, running, settings_for, wait_for

TOKEN = "escaping-test-token"
MARK = "<script>alert(1)</script>"


async def test_every_page_escapes_outside_text(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    receiver.script = [422]  # the delivery dies, so it is on the dead-letter page too
    settings = settings_for(
        db,
        receiver.url,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        retry={"max_attempts": 1},
    )
    body = json.dumps({"type": MARK, "note": MARK}).encode()
    async with running(settings) as relay:
        status, headers, _ = await post(
            client,
            relay.port,
            body,
            key=MARK,
            extra={"X-Evil": MARK, "X-Bold": "<b>bold</b>"},
        )
        assert status == 200
        event_id = headers["X-Relay-Event-Id"]
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("dead",)])
        # A rejection whose reason quotes nothing of the sender, but a header that does.
        await post(client, relay.port, b"{}", signature="bad", extra={"X-Evil": MARK})
        await wait_for(lambda: query(db, "SELECT COUNT(*) FROM rejections") == [(1,)])
        base = f"http://{relay.admin_address}"
        async with client.post(
            base + "/ui/login", data={"token": TOKEN}, allow_redirects=False
        ) as r:
            cookie = re.search(r"relay_session=([^;]+)", r.headers["Set-Cookie"])
            assert cookie is not None
        jar = {"Cookie": f"relay_session={cookie.group(1)}"}
        pages = {}
        for path in (
            "/ui/",
            "/ui/?fragment=1",
            f"/ui/events?q={MARK}&type={MARK}",
            f"/ui/events/{event_id}",
            "/ui/dead",
            "/ui/destinations",
            "/ui/rejections",
            f"/ui/login?error={MARK}&next={MARK}",
            f"/ui/dead?done={MARK}",
        ):
            async with client.get(base + path, headers=jar) as r:
                assert r.status == 200, path
                pages[path] = await r.text()
    for path, html in pages.items():
        assert "<script>alert" not in html, path
        assert "<b>" not in html, path
    event_page = pages[f"/ui/events/{event_id}"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in event_page  # shown, as text
    assert "&lt;b&gt;bold&lt;/b&gt;" in event_page
    assert "&lt;script&gt;" in pages[f"/ui/events?q={MARK}&type={MARK}"]
    # A notice is a code from the console's own table: text from the URL is not shown.
    assert 'class="notice"' not in pages[f"/ui/dead?done={MARK}"]
