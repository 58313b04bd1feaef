"""No configured secret, in any encoding relay knows of, is kept anywhere (issue 14).

Before: a ``verify = "token"`` source kept ``Authorization: Bearer <secret>`` in
``events.headers`` as received, and so in the WAL, the backups and the admin API.

Sources whose requests carry the secret itself (token, basic, gitlab, telegram, postmark)
post accepted and refused requests to the real relay (log level debug), which delivers them
through a destination that adds its own secret header. Then the main file, the WAL, a
backup, the log, /metrics and every admin API answer are searched for every secret, raw and
in each encoding relay knows of (base64 of ``user:password``, base64, hex, percent-encoding).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import aiohttp

from tests.helpers import Receiver, wait_for
from tests.process import RelayProcess, run_cli

SECRETS = {
    "token": "tok-Secret-1111",
    "custom": "custom-Secret-2222",
    "basic": "basic-Secret-3333",
    "gitlab": "gitlab-Secret-4444",
    "telegram": "telegram-Secret-5555",
    "postmark": "postmark-Secret-6666",
    "admin": "admin-Secret-7777",
    "outgoing": "outgoing-Secret-8888",
}


def _config(tmp_path: Path, receiver: Receiver) -> Path:
    s = SECRETS
    sources = f"""
[[sources]]
name = "tok"
verify = "token"
secret = "{s["token"]}"
[[sources]]
name = "custom"
verify = "token"
header = "X-Hook-Pass"
prefix = ""
secret = "{s["custom"]}"
[[sources]]
name = "basic"
verify = "basic"
username = "hooks"
password = "{s["basic"]}"
[[sources]]
name = "gitlab"
verify = "gitlab"
secret = "{s["gitlab"]}"
[[sources]]
name = "telegram"
verify = "telegram"
secret = "{s["telegram"]}"
[[sources]]
name = "postmark"
verify = "postmark"
username = "pm"
password = "{s["postmark"]}"
allow_ips = ["127.0.0.0/8"]
"""
    names = ["tok", "custom", "basic", "gitlab", "telegram", "postmark"]
    routes = "".join(f'[[routes]]\nsource = "{n}"\ndestinations = ["app"]\n' for n in names)
    config = tmp_path / "relay.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
[storage]
path = "{tmp_path / "relay.db"}"
[log]
level = "debug"
[admin]
listen = "127.0.0.1:0"
token = "{s["admin"]}"
{sources}
[[destinations]]
name = "app"
url = "{receiver.url}"
[destinations.headers.set]
Authorization = "Bearer {s["outgoing"]}"
{routes}"""
    )
    return config


def _requests() -> list[tuple[str, dict[str, str], int]]:
    """(source, headers, expected status): each accepted, and refused ways to send it."""
    s = SECRETS

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    return [
        ("tok", {"Authorization": f"Bearer {s['token']}"}, 200),
        ("tok", {"Authorization": f"Bearer {s['token']}x"}, 401),
        ("custom", {"X-Hook-Pass": s["custom"]}, 200),
        ("basic", {"Authorization": basic("hooks", s["basic"])}, 200),
        ("basic", {"Authorization": basic("someone", s["basic"])}, 401),
        ("gitlab", {"X-Gitlab-Token": s["gitlab"], "X-Gitlab-Event": "Push Hook"}, 200),
        ("telegram", {"X-Telegram-Bot-Api-Secret-Token": s["telegram"]}, 200),
        ("postmark", {"Authorization": basic("pm", s["postmark"])}, 200),
    ]


def _forms(secret: str) -> list[bytes]:
    """The secret as relay might have written it."""
    raw = secret.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        raw.hex().encode(),
        urllib.parse.quote(secret, safe="").encode(),
        *(base64.b64encode(f"{u}:{secret}".encode()) for u in ("hooks", "pm", "someone")),
    ]


async def test_no_configured_secret_is_kept_anywhere(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    relay = RelayProcess(_config(tmp_path, receiver))
    answers: list[bytes] = []
    db = tmp_path / "relay.db"
    try:
        relay.start()
        for n, (source, headers, expected) in enumerate(_requests()):
            url = f"http://127.0.0.1:{relay.port}/in/{source}"
            body = json.dumps({"update_id": n, "type": "t"}).encode()
            async with client.post(url, data=body, headers=headers) as response:
                assert response.status == expected, (source, await response.text())
        accepted = sum(1 for _, _, status in _requests() if status == 200)
        await wait_for(lambda: len(receiver.received) == accepted)
        # The destination's own secret reached the receiver: it was there to be kept.
        assert receiver.received[0].headers["Authorization"] == f"Bearer {SECRETS['outgoing']}"

        admin = await _admin_address(relay)
        bearer = {"Authorization": f"Bearer {SECRETS['admin']}"}
        async with client.get(f"{admin}/api/events", headers=bearer) as response:
            events = (await response.json())["events"]
            answers.append(json.dumps(events).encode())
        for event in events:
            async with client.get(f"{admin}/api/events/{event['id']}", headers=bearer) as r:
                answers.append(await r.read())
        for path in ("/api/rejections", "/api/stats", "/api/dead", "/metrics"):
            async with client.get(admin + path, headers=bearer) as response:
                assert response.status == 200, path
                answers.append(await response.read())
        wal = db.with_name("relay.db-wal").read_bytes()  # before the checkpoint at stop
        backup = tmp_path / "backup.db"
        made = run_cli("backup", str(backup), "--config", str(relay.config))
        assert made.returncode == 0, made.stderr
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    places = {
        "database": db.read_bytes(),
        "wal": wal,
        "backup": backup.read_bytes(),
        "log": relay.log.read_bytes(),
        "admin API and /metrics": b"\n".join(answers),
    }
    assert b"Push Hook" in places["database"]  # the headers were stored, only redacted
    found = [
        (name, where)
        for name, secret in SECRETS.items()
        for where, data in places.items()
        if any(form in data for form in _forms(secret))
    ]
    assert found == [], found
    # Nothing the sender authenticated with was forwarded either.
    for received in receiver.received:
        for name in ("X-Hook-Pass", "X-Gitlab-Token", "X-Telegram-Bot-Api-Secret-Token"):
            assert name not in received.headers


async def _admin_address(relay: RelayProcess) -> str:
    for line in relay.log.read_text().splitlines():
        if "admin.ready" in line or "admin.listening" in line:
            for part in line.split():
                if part.startswith(("listen=", "address=")):
                    return "http://" + part.split("=", 1)[1]
    raise AssertionError("no admin address in the log:\n" + relay.log.read_text()[-2000:])
