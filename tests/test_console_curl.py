"""The event page's "Copy as curl" (issue 20): the command copied from Chromium's clipboard,
run by bash and curl against the same test receiver, sends what the delivery sent: the body
byte for byte and relay's headers, with the destination's secret header read from the
environment instead of shown on the page."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import Receiver, post, query, running, settings_for, wait_for
from tests.test_console import TOKEN, browser

__all__ = ["browser"]  # the fixture, used by name

SECRET = "k3y-that-must-not-show"
INLINE = "inline-token-that-must-not-show"
BODY = b'{"type": "invoice.paid", "note": "caf\xc3\xa9 & \'quotes\' $HOME `x`"}\n'


async def test_copy_as_curl_reproduces_the_delivery(
    tmp_path: Path,
    receiver: Receiver,
    client: aiohttp.ClientSession,
    browser: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECEIVER_KEY", SECRET)
    db = tmp_path / "relay.db"
    settings = settings_for(
        db,
        receiver.url,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        destination={
            "headers": {
                "set": {
                    "X-Api-Key": "env:RECEIVER_KEY",  # a secret from the environment
                    "Authorization": f"Bearer {INLINE}",  # written in the config, named so
                    "X-Tenant": "acme",
                }
            }
        },
    )
    async with running(settings) as relay:
        status, headers, _ = await post(client, relay.port, BODY, key="c1")
        assert status == 200
        event = headers["X-Relay-Event-Id"]
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("delivered",)])
        sent = receiver.received[0]
        assert sent.headers["X-Api-Key"] == SECRET

        base = f"http://{relay.admin_address}"
        context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
        page = await context.new_page()
        await page.goto(base + "/ui/login")
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.keyboard.press("Enter")
        await page.get_by_role("heading", name="Overview").wait_for()
        await page.goto(f"{base}/ui/events/{event}")
        assert SECRET not in await page.content()
        assert INLINE not in await page.content()
        await page.get_by_text("Request as sent").click()
        assert await page.locator("details.request").get_by_text("X-Tenant").count() == 1
        await page.locator("summary", has_text="Copy as curl").click()
        await page.get_by_role("button", name="Copy as curl").click()
        await page.get_by_role("button", name="Copied").wait_for()
        command = await page.evaluate("navigator.clipboard.readText()")

    assert SECRET not in command
    assert INLINE not in command
    # Issue 29: the sender's signature (forwarded) was asked for through a variable whose
    # value is shown nowhere; only the provider's secret makes it, so it is left out.
    assert "RELAY_H_X_SIGNATURE" not in command
    assert "-H 'X-Signature" not in command
    assert "# left out: X-Signature, the sender's own" in command
    env = {
        "PATH": os.environ["PATH"],
        "RELAY_H_X_API_KEY": SECRET,
        "RELAY_H_AUTHORIZATION": f"Bearer {INLINE}",
    }
    run = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", command],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert len(receiver.received) == 2
    again = receiver.received[1]
    assert again.body == sent.body == BODY
    relays = (
        "Content-Type",
        "X-Api-Key",
        "Authorization",
        "X-Tenant",
        "X-Relay-Event-Id",
        "X-Relay-Delivery-Id",
        "X-Relay-Attempt",
        "X-Relay-Source",
    )
    assert {h: again.headers.get(h) for h in relays} == {h: sent.headers.get(h) for h in relays}
