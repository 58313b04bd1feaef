"""Each way a request to /in/<source> can end is counted under its outcome
(relay_requests_total{source, outcome}): the label says what happened, whatever the answer's
headers say."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.helpers import BODY_JSON, HeldClock, Receiver, post, running, settings_for


async def test_every_ending_of_a_request_has_its_outcome(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    settings = settings_for(
        tmp_path / "relay.db",
        receiver.url,
        server={"max_body_size": 2000},
        # Six requests pass the rate check below (accepted, duplicate, rejected, too large
        # by its length, an unknown coding, an undecodable body); the seventh is limited.
        source={"rate_limit": {"rate": 0.001, "burst": 6}},
    )
    async with running(settings, clock=HeldClock()) as relay:
        port = relay.port
        assert (await post(client, port, BODY_JSON, key="a"))[0] == 200
        assert (await post(client, port, BODY_JSON, key="a"))[0] == 200  # duplicate
        assert (await post(client, port, BODY_JSON, key="b", signature="sha256=00"))[0] == 401
        assert (await post(client, port, b"x" * 3000, key="c"))[0] == 413
        odd = {"Content-Encoding": "br"}
        assert (await post(client, port, BODY_JSON, key="d", extra=odd))[0] == 415
        broken = {"Content-Encoding": "gzip"}
        assert (await post(client, port, b"not gzip", key="e", extra=broken))[0] == 400
        long = {"X-Long": "v" * 9000}
        assert (await post(client, port, BODY_JSON, key="f", extra=long))[0] == 431
        assert (await post(client, port, BODY_JSON, key="g"))[0] == 429
        counts = {
            outcome: relay.metrics.requests.labels("demo", outcome)._value.get()
            for outcome in (
                "accepted",
                "duplicate",
                "rejected",
                "too_large",
                "malformed",
                "limited",
                "handshake",
                "other",
            )
        }
    assert counts == {
        "accepted": 1,
        "duplicate": 1,
        "rejected": 1,
        "too_large": 2,
        "malformed": 2,
        "limited": 1,
        "handshake": 0,
        "other": 0,
    }
