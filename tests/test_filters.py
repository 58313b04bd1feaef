"""One vocabulary for every list (relay.filters): the API takes exactly what openapi.json
documents, refuses anything else by name, and is level with the console (dead letters by
key, text and page; rejections and audit by time and page)."""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from relay import filters
from tests.helpers import BODY_JSON, Receiver, post, query, running, settings_for, wait_for
from tests.test_admin import ADMIN, call

VALID = {
    "source": "demo",
    "destination": "app",
    "type": "invoice",
    "status": "dead",
    "since": "2h",
    "until": "2099-01-01 00:00",
    "key": "k",
    "q": "text",
    "error": "HTTP",
    "action": "replay",
    "before": "999999",
    "limit": "10",
}


def test_openapi_documents_each_list_with_the_vocabulary() -> None:
    document = json.loads(resources.files("relay").joinpath("openapi.json").read_text())
    for name in filters.LISTS:
        documented = document["paths"][f"/api/{name}"]["get"]["parameters"]
        assert documented == filters.parameters(name), name
        assert [p["name"] for p in documented] == list(filters.LISTS[name])


def test_the_cli_flags_map_onto_the_vocabulary() -> None:
    args = argparse.Namespace(
        source="demo", search="needle", since="2h", limit=5, csv=False, destination=None
    )
    assert filters.from_flags(args, "events") == {"source": "demo", "since": "2h", "q": "needle"}


async def test_each_list_takes_what_it_documents_and_refuses_anything_else(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    settings = settings_for(tmp_path / "relay.db", receiver.url, **ADMIN)
    async with running(settings) as relay:
        for name, fields in filters.LISTS.items():
            given = {
                f: VALID[f] if f != "before" or name != "events" else "evt_zzzz" for f in fields
            }
            status, answer = await call(client, relay, "GET", f"/api/{name}?{urlencode(given)}")
            assert status == 200, (name, answer)
            status, answer = await call(client, relay, "GET", f"/api/{name}?surprise=1")
            assert status == 400, (name, answer)
            assert answer["error"].startswith("surprise: not a filter of this list")
            status, answer = await call(client, relay, "GET", f"/api/{name}?since=yesterday-ish")
            assert status == 400, (name, answer)
            assert answer["error"].startswith("since:"), answer
        status, answer = await call(client, relay, "GET", f"/api/dead?before={2**70}")
        assert status == 400, answer  # past the largest id a database keeps: refused, no 500


async def test_dead_letters_by_key_text_and_page_through_the_api(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    receiver.default = 422
    db = tmp_path / "relay.db"
    settings = settings_for(db, receiver.url, **ADMIN)
    async with running(settings) as relay:
        for n in range(3):
            body = b'{"type": "invoice.paid", "note": "needle-%d"}' % n
            assert (await post(client, relay.port, body, key=f"k{n}"))[0] == 200
        await wait_for(
            lambda: query(db, "SELECT count(*) FROM deliveries WHERE state='dead'") == [(3,)]
        )
        status, first = await call(client, relay, "GET", "/api/dead?limit=2")
        assert status == 200
        assert (len(first["dead"]), first["total"]) == (2, 3)
        status, second = await call(
            client, relay, "GET", f"/api/dead?limit=2&before={first['next_before']}"
        )
        assert (len(second["dead"]), second["total"], second["next_before"]) == (1, 3, None)
        seen = [d["delivery_id"] for d in first["dead"] + second["dead"]]
        assert len(set(seen)) == 3
        status, by_key = await call(client, relay, "GET", "/api/dead?key=k1")
        assert [d["event_id"] for d in by_key["dead"]] == [
            r[0] for r in query(db, "SELECT id FROM events WHERE idempotency_key='k1'")
        ]
        status, by_text = await call(client, relay, "GET", "/api/dead?q=NEEDLE-2")
        assert by_text["total"] == 1
        status, died = await call(client, relay, "GET", "/api/dead?since=2099-01-01")
        assert died["total"] == 0  # since: when they died


async def test_rejections_and_audit_by_time_and_page(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    settings = settings_for(tmp_path / "relay.db", receiver.url, **ADMIN)
    async with running(settings) as relay:
        for n in range(3):
            assert (await post(client, relay.port, BODY_JSON, signature=f"sha256=0{n}"))[0] == 401
        await wait_for(
            lambda: query(tmp_path / "relay.db", "SELECT count(*) FROM rejections") == [(3,)]
        )
        status, first = await call(client, relay, "GET", "/api/rejections?source=demo&limit=2")
        assert (status, len(first["rejections"])) == (200, 2)
        status, rest = await call(
            client, relay, "GET", f"/api/rejections?limit=2&before={first['next_before']}"
        )
        assert (len(rest["rejections"]), rest["next_before"]) == (1, None)
        status, later = await call(client, relay, "GET", "/api/rejections?since=2099-01-01")
        assert later["rejections"] == []
        assert (await call(client, relay, "POST", "/api/destinations/app/pause"))[0] == 200
        assert (await call(client, relay, "POST", "/api/destinations/app/resume"))[0] == 200
        status, paused = await call(client, relay, "GET", "/api/audit?action=pause")
        assert [row["action"] for row in paused["audit"]] == ["pause"]


@pytest.mark.parametrize(
    ("query_string", "field"),
    [("limit=0", "limit"), ("limit=١٢", "limit"), ("before=x", "before"), ("until=soon", "until")],
)
def test_a_bad_value_names_its_field(query_string: str, field: str) -> None:
    q = dict(part.split("=", 1) for part in query_string.split("&"))

    def read() -> None:
        filters.dead(q)
        filters.limit(q, 50)

    with pytest.raises(filters.FilterError, match=rf"^{field}:"):
        read()
