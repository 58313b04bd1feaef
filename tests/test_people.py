"""Named people with roles (issue 33): each token is a person, each person a role; the API,
the console and the CLI act as that person, and the audit trail names them."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.cli import main
from relay.config import load_config
from relay.errors import ConfigError
from relay.people import NEEDS, ROLES, People, Person, digest, refusal
from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for
from tests.test_admin import call as call_api
from tests.test_console import TOKEN as CONSOLE_TOKEN
from tests.test_console import browser
from tests.test_replay import TOKEN, _config, cli, relay_from

__all__ = ["browser"]  # the fixture, used by name

ALICE, VIC = "alice-token-0123456789", "vic-token-0123456789"


def with_people(config: Path, *lines: str) -> Path:
    config.write_text(config.read_text() + "\n" + "\n".join(lines) + "\n")
    return config


USERS = (
    '[[admin.users]]\nname = "alice"\nrole = "operator"\ntoken = "' + ALICE + '"',
    '[[admin.users]]\nname = "vic"\nrole = "viewer"\ntoken_sha256 = "' + digest(VIC).hex() + '"',
)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_what_its_rank_allows(role: str) -> None:
    person = Person("p", role, b"")
    allowed = {a for a in NEEDS if person.may(a)}
    expected = {
        "viewer": {"read"},
        "operator": {"read", "replay", "pause", "resume", "catch-up"},
        "admin": set(NEEDS),
    }[role]
    assert allowed == expected


def test_a_token_finds_its_person_only() -> None:
    people = People([Person("a", "admin", digest("x")), Person("b", "viewer", digest("y"))])
    assert (people.find("x") or Person("", "viewer", b"")).name == "a"
    assert people.find("y") is not None
    assert people.find("z") is None
    assert refusal(Person("vic", "viewer", b""), "replay") == (
        "vic is a viewer: replay needs an operator or above"
    )


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        (
            '[[admin.users]]\nname = "bob"\nrole = "viewer"\ntoken = "t"\ntoken_sha256 = "'
            + "a" * 64
            + '"',
            "exactly one",
        ),
        ('[[admin.users]]\nname = "bob"\nrole = "viewer"', "exactly one"),
        ('[[admin.users]]\nname = "admin"\nrole = "viewer"\ntoken = "t2"', "named twice"),
        ('[[admin.users]]\nname = "Bob"\nrole = "viewer"\ntoken = "t3"', "name"),
        ('[[admin.users]]\nname = "bob"\nrole = "root"\ntoken = "t4"', "role"),
    ],
)
def test_a_bad_person_names_the_key(
    tmp_path: Path, receiver: Receiver, lines: str, said: str
) -> None:
    config = with_people(_config(tmp_path, receiver, receiver), lines)
    with pytest.raises(ConfigError, match=said):
        load_config(config)


async def _dead_one(relay: object, client: aiohttp.ClientSession, db: Path) -> None:
    port = relay.port  # type: ignore[attr-defined]
    assert (await post(client, port, b'{"type": "invoice.paid"}', key="d1"))[0] == 200
    await wait_for(
        lambda: query(db, "SELECT count(*) FROM deliveries WHERE state='dead'") == [(1,)]
    )


async def test_a_viewer_reads_but_changes_nothing_and_an_operator_replays_as_herself(
    tmp_path: Path, client: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = await Receiver(default=422).start()
    config = with_people(_config(tmp_path, dead, dead), *USERS)
    socket = aiohttp.UnixConnector(path=str(tmp_path / "admin.sock"))
    try:
        async with relay_from(config) as relay, aiohttp.ClientSession(connector=socket) as api:
            await _dead_one(relay, client, tmp_path / "relay.db")

            async def call(
                token: str, method: str, path: str, body: object = None
            ) -> tuple[int, dict[str, object]]:
                headers = {"Authorization": f"Bearer {token}"}
                async with api.request(
                    method, f"http://relay{path}", json=body, headers=headers
                ) as r:
                    return r.status, await r.json()

            assert (await call(VIC, "GET", "/api/dead"))[0] == 200
            status, answer = await call(
                VIC, "POST", "/api/replay", {"filter": {"destination": "a"}}
            )
            assert (status, answer["error"]) == (
                403,
                "vic is a viewer: replay needs an operator or above",
            )
            assert (await call(VIC, "POST", "/api/destinations/a/pause"))[0] == 403
            status, answer = await call(ALICE, "POST", "/api/reload")
            assert (status, answer["error"]) == (
                403,
                "alice is an operator: reload needs an admin or above",
            )
            assert (await call("nobody", "GET", "/api/dead"))[0] == 401
            status, answer = await call(
                ALICE, "POST", "/api/replay", {"filter": {"destination": "a"}}
            )
            assert (status, answer["replayed"]) == (200, 1)
            # The CLI as another person: --token, and $RELAY_ADMIN_TOKEN.
            code, _ = await cli(config, "pause", "a", "--token", ALICE, capsys=capsys)
            assert code == 0
            capsys.readouterr()
            code = await asyncio.to_thread(
                main, ["resume", "a", "--token", VIC, "--config", str(config)]
            )
            assert code == 1
            assert "vic is a viewer: resume needs an operator" in capsys.readouterr().err
            status, trail = await call(TOKEN, "GET", "/api/audit")
        rows = {(r["actor"], r["action"]) for r in trail["audit"]}  # type: ignore[index, union-attr]
        assert ("alice", "replay") in rows
        assert ("alice", "pause") in rows
        assert not any(actor == "vic" for actor, _ in rows)  # refused: nothing was done
        replayed = next(r for r in trail["audit"] if r["action"] == "replay")  # type: ignore[union-attr, index]
        assert replayed["params"]["destination"] == "a"  # type: ignore[index]  (the selection)
        assert replayed["result"]["replayed"] == 1  # type: ignore[index]
        assert len(replayed["result"]["deliveries"]) == 1  # type: ignore[index, arg-type]
    finally:
        await dead.stop()


async def test_a_person_added_by_user_add_works_after_reload_and_removed_is_signed_out(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, receiver, receiver)
    original = config.read_text()
    socket = aiohttp.UnixConnector(path=str(tmp_path / "admin.sock"))
    async with relay_from(config) as relay, aiohttp.ClientSession(connector=socket) as api:
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["user", "add", "bob", "--role", "viewer", "--json"])
        out = capsys.readouterr().out
        assert code == 0
        made = json.loads(out)
        config.write_text(original + "\n" + made["toml"])
        assert "token =" not in made["toml"]
        assert made["token"] not in config.read_text()
        headers = {"Authorization": f"Bearer {made['token']}"}
        async with api.get("http://relay/api/events", headers=headers) as r:
            assert r.status == 401  # not yet: the config is read again on reload
        assert await relay.reload() is None
        async with api.get("http://relay/api/events", headers=headers) as r:
            assert r.status == 200
        async with api.post(
            "http://relay/ui/login", data={"token": made["token"]}, allow_redirects=False
        ) as r:
            assert r.status == 303
            found = re.search(r"relay_session=([^;]+)", r.headers.get("Set-Cookie", ""))
        assert found is not None
        cookie = {"Cookie": f"relay_session={found.group(1)}"}
        async with api.get("http://relay/ui/events", headers=cookie, allow_redirects=False) as r:
            assert r.status == 200
            page = await r.text()
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf is not None
        async with api.post(
            "http://relay/ui/destinations/a/pause",
            data={"csrf": csrf.group(1)},
            headers=cookie,
            allow_redirects=False,
        ) as r:
            assert r.status == 403  # a viewer's pause button is refused, with why
            assert "bob is a viewer: pause needs an operator" in await r.text()
        config.write_text(original)  # bob removed
        assert await relay.reload() is None
        async with api.get("http://relay/ui/events", headers=cookie, allow_redirects=False) as r:
            assert r.status == 303  # signed out at his next request
            assert r.headers["Location"].startswith("/ui/login")
        async with api.get("http://relay/api/events", headers=headers) as r:
            assert r.status == 401


async def test_in_a_browser_a_viewer_is_refused_and_an_operator_replays(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession, browser: Any
) -> None:
    db = tmp_path / "relay.db"
    receiver.script = [422]  # the event's delivery dies
    users = [
        {"name": "vic", "role": "viewer", "token": VIC},
        {"name": "alice", "role": "operator", "token": ALICE},
    ]
    settings = settings_for(
        db,
        receiver.url,
        admin={"listen": "127.0.0.1:0", "token": CONSOLE_TOKEN, "users": users},
        retry={"max_attempts": 1},
    )
    async with running(settings) as relay:
        base = f"http://{relay.admin_address}"
        _, headers, _ = await post(client, relay.port, BODY_JSON, key="first")
        dead_id = headers["X-Relay-Event-Id"]
        await wait_for(lambda: query(db, "SELECT state FROM deliveries") == [("dead",)])
        for token, name in ((VIC, "vic"), (ALICE, "alice")):
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"{base}/ui/events/{dead_id}")
            await page.get_by_label("Admin token").fill(token)
            await page.keyboard.press("Enter")
            await page.get_by_role("heading", name=dead_id).wait_for()
            assert f"{name} (" in await page.locator("header .who").inner_text()
            await page.get_by_role("button", name="Replay to app").click()
            if name == "vic":
                await page.get_by_text("vic is a viewer: replay needs an operator").wait_for()
            else:
                await wait_for(lambda: len(receiver.received) == 2)
            await context.close()
        status, trail = await call_api(
            client, relay, "GET", "/api/audit?action=replay", token=CONSOLE_TOKEN
        )
    assert status == 200
    assert [row["actor"] for row in trail["audit"]] == ["alice"]
