"""Screenshots of every console page for docs/screenshots/, from a real relay with a little
traffic (some delivered, some dead, a paused destination, a few rejections). Needs Debian's
chromium (make browser). Only 127.0.0.1.

Usage: python bench/screenshots.py
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.app import Relay  # noqa: E402 - after the path tweak
from relay.config import Settings  # noqa: E402

TOKEN = "screenshot-token"
SECRET = "stripe-demo-secret"
OUT = ROOT / "docs" / "screenshots"


async def receivers() -> tuple[web.AppRunner, int]:
    rng = random.Random(3)

    async def billing(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=422 if rng.random() < 0.15 else 200, text="ok")

    async def crm(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503, text="maintenance")

    async def ops(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_post("/billing", billing)
    app.router.add_post("/crm", crm)
    app.router.add_post("/ops", ops)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def settings(db: Path, port: int) -> Settings:
    return Settings(
        server={"listen": "127.0.0.1:0"},
        storage={"path": str(db)},
        log={"level": "warning"},
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        sources=[
            {
                "name": "stripe",
                "verify": "hmac",
                "secret": SECRET,
                "prefix": "sha256=",
                "idempotency_key": "json:/id",
                "event_type": "json:/type",
            },
            {"name": "github", "verify": "none", "event_type": "header:X-GitHub-Event"},
        ],
        destinations=[
            {
                "name": "billing",
                "url": f"http://127.0.0.1:{port}/billing",
                "retry": {"max_attempts": 1},
                "headers": {"set": {"Authorization": "Bearer demo-key", "X-Tenant": "acme"}},
            },
            {"name": "ops", "url": f"http://127.0.0.1:{port}/ops"},
            {
                "name": "crm",
                "url": f"http://127.0.0.1:{port}/crm",
                "circuit": {"failures": 3, "cooldown": 600},
                "retry": {"base": 60},
            },
        ],
        alerts={"destination": "ops", "backlog": 60},
        routes=[
            {"source": "stripe", "destinations": ["billing", "crm"]},
            {"source": "github", "destinations": ["billing"]},
        ],
    )


async def traffic(port: int) -> str:
    kinds = ("invoice.paid", "invoice.created", "customer.updated", "charge.refunded")
    last = ""
    async with aiohttp.ClientSession() as session:
        for i in range(60):
            body = json.dumps(
                {
                    "id": f"evt_{i:04d}",
                    "type": kinds[i % 4],
                    "data": {"object": {"amount": 1000 + i, "currency": "eur"}},
                }
            )
            signature = (
                "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            )
            if i % 17 == 0:
                signature = "sha256=" + "0" * 64  # a few rejections
            async with session.post(
                f"http://127.0.0.1:{port}/in/stripe", data=body, headers={"X-Signature": signature}
            ) as r:
                if r.status == 200:
                    last = r.headers["X-Relay-Event-Id"]
            async with session.post(
                f"http://127.0.0.1:{port}/in/github",
                data=b'{"ref": "main"}',
                headers={"X-GitHub-Event": "push"},
            ):
                pass
    return last


async def main() -> int:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        print("install chromium first: make browser", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    runner, port = await receivers()
    with tempfile.TemporaryDirectory() as tmp:
        relay = Relay(settings(Path(tmp) / "relay.db", port))
        await relay.start()
        try:
            event_id = await traffic(relay.port)
            await asyncio.sleep(2.0)
            base = f"http://{relay.admin_address}"
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                context = await browser.new_context(viewport={"width": 1280, "height": 860})
                page = await context.new_page()
                await page.goto(base + "/ui/login")
                await page.screenshot(path=str(OUT / "login.png"))
                await page.get_by_label("Admin token").fill(TOKEN)
                await page.keyboard.press("Enter")
                await page.get_by_role("heading", name="Overview").wait_for()
                shots = [
                    ("overview", "/ui/"),
                    ("events", "/ui/events?source=stripe"),
                    ("event", f"/ui/events/{event_id}"),
                    ("dead", "/ui/dead?group=error"),
                    ("destinations", "/ui/destinations"),
                    ("rejections", "/ui/rejections"),
                    ("alerts", "/ui/alerts"),
                    ("audit", "/ui/audit"),
                ]
                for name, path in shots:
                    await page.goto(base + path)
                    if name == "event":  # with the first delivery's request as sent open
                        await page.locator("details.request summary").first.click()
                    await page.screenshot(path=str(OUT / f"{name}.png"), full_page=name != "event")
                phone = await browser.new_context(
                    viewport={"width": 390, "height": 844}, device_scale_factor=2
                )
                await phone.add_cookies(await context.cookies())
                small = await phone.new_page()
                await small.goto(base + "/ui/")
                await small.screenshot(path=str(OUT / "overview-phone.png"))
                await browser.close()
        finally:
            await relay.stop()
            await runner.cleanup()
    print(f"screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
