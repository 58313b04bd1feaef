"""Catch-up's pure parts (relay.catchup.plan, .api, .target, the config): table tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.catchup import plan
from relay.catchup.api import retry_after
from relay.catchup.target import inside, parse_rfc3339, rfc3339
from relay.config import load_config
from relay.errors import RelayError
from relay.records import Window

T = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("last_beat", "started", "expected"),
    [
        (None, T, None),  # a first start: nothing known, nothing to catch up
        (T - 300, T, (T - 360, T + 60)),  # down five minutes: the window, with margins
        (T - 10, T, (T - 70, T + 60)),  # a quick restart still checks its seconds
        (T + 5, T, None),  # another relay beat after this one started: nobody was down
    ],
)
def test_downtime_window(
    last_beat: float | None, started: float, expected: tuple[float, float] | None
) -> None:
    window = plan.downtime("s", last_beat, started)
    assert (None if window is None else (window.since, window.until)) == expected
    if window is not None:
        assert window.reason == "downtime"


def test_the_periodic_window_is_the_last_two_intervals_up_to_a_minute_ago() -> None:
    window = plan.periodic("s", T, 900)
    assert (window.since, window.until, window.reason) == (T - 1800, T - 60, "interval")


def w(source: str, since: float, until: float, reason: str = "interval", id_: int = 1) -> Window:
    return Window(source, since, until, reason, id_)


@pytest.mark.parametrize(
    ("windows", "runs"),
    [
        ([], []),
        ([w("a", 0, 10)], [("a", 0, 10, 1)]),
        ([w("a", 0, 10), w("a", 5, 20, id_=2)], [("a", 0, 20, 2)]),  # overlapping: one run
        ([w("a", 0, 10), w("a", 10, 20, id_=2)], [("a", 0, 20, 2)]),  # touching: one run
        ([w("a", 0, 10), w("a", 11, 20, id_=2)], [("a", 0, 10, 1), ("a", 11, 20, 1)]),
        ([w("b", 0, 10), w("a", 5, 20, id_=2)], [("b", 0, 10, 1), ("a", 5, 20, 1)]),
        ([w("a", 8, 9), w("a", 0, 30, id_=2)], [("a", 0, 30, 2)]),  # one inside another
    ],
)
def test_overlapping_windows_of_a_source_run_once(
    windows: list[Window], runs: list[tuple[str, float, float, int]]
) -> None:
    merged = plan.merge(windows)
    assert [(r.source, r.since, r.until, len(r.windows)) for r in merged] == runs


def test_a_run_with_a_downtime_window_is_a_downtime_run() -> None:
    run = plan.merge([w("a", 0, 10, "interval"), w("a", 5, 20, "downtime", 2)])[0]
    assert run.reason == "downtime"


DAY = 86400.0


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (T - DAY, T, (T - DAY, None)),
        (
            T - 40 * DAY,
            T,
            (T - 30 * DAY, "the provider keeps 30 days: the window starts there, not earlier"),
        ),
        (T - 40 * DAY, T - 31 * DAY, None),  # all of it gone
    ],
)
def test_a_window_older_than_the_provider_keeps(
    since: float, until: float, expected: tuple[float, str | None] | None
) -> None:
    assert plan.within_retention(since, until, T, 30 * DAY) == expected


@pytest.mark.parametrize(
    ("reason", "tries", "automatic", "state"),
    [
        ("manual", 1, True, "failed"),  # the operator saw the error: not repeated
        ("downtime", 1, True, "open"),  # tried again at the next interval
        ("interval", 3, True, "open"),
        ("downtime", plan.GIVE_UP_TRIES, True, "failed"),
        ("downtime", 1, False, "failed"),  # automatic = false now: nobody would retry it
    ],
)
def test_what_becomes_of_a_failed_window(
    reason: str, tries: int, automatic: bool, state: str
) -> None:
    window = Window("s", 0, 1, reason, 1, tries)
    assert plan.after_failure(window, automatic) == state


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "Wed, 15 Jan 2027 08:00:30 GMT"}, 30.0),
        ({"Retry-After": "soon"}, None),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(T) + 42)}, 42.0),
        ({"x-ratelimit-remaining": "12", "x-ratelimit-reset": str(int(T) + 42)}, None),
        ({}, None),
    ],
)
def test_how_long_a_provider_asks_to_wait(headers: dict[str, str], wait: float | None) -> None:
    assert retry_after(headers, T) == wait


def test_times_to_the_provider_hold_the_whole_window() -> None:
    assert rfc3339(T + 0.7) == "2027-01-15T08:00:00Z"
    assert rfc3339(T + 0.7, up=True) == "2027-01-15T08:00:01Z"
    assert parse_rfc3339("2027-01-15T08:00:00Z") == T
    assert parse_rfc3339("2027-01-15T09:00:00+01:00") == T
    window = Window("s", T + 0.5, T + 10.2, "manual")
    assert inside(window, T)  # a delivery logged at T (to the second) in a window from T.5
    assert inside(window, T + 11)
    assert not inside(window, T + 12)


def _config(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(f'[storage]\npath = "{tmp_path / "r.db"}"\n{source}')
    return path


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (
            '[[sources]]\nname = "s"\nverify = "shopify"\nsecret = "x"\n'
            '[sources.catch_up]\napi_key = "k"\n',
            'catch_up is not available for verify = "shopify"',
        ),
        (
            '[[sources]]\nname = "g"\nverify = "github"\nsecret = "x"\n'
            '[sources.catch_up]\napi_key = "k"\n',
            "catch_up.hook: GitHub needs the webhook",
        ),
        (
            '[[sources]]\nname = "g"\nverify = "github"\nsecret = "x"\n'
            '[sources.catch_up]\napi_key = "k"\nhook = "app"\n',
            "catch_up.app_id",
        ),
        (
            '[[sources]]\nname = "v"\nverify = "standard-webhooks"\nsecret = "whsec_eA=="\n'
            '[sources.catch_up]\napi_key = "k"\napp_id = "app_1"\n',
            "catch_up.endpoint_id: Svix needs",
        ),
        (
            '[[sources]]\nname = "s"\nverify = "stripe"\nsecret = "x"\n'
            'idempotency_key = "header:Idempotency-Key"\n[sources.catch_up]\napi_key = "k"\n',
            'set idempotency_key = "json:/id"',
        ),
        (
            '[[sources]]\nname = "s"\nverify = "stripe"\nsecret = "x"\n'
            '[sources.catch_up]\napi_key = "k"\ninterval = "10s"\n',
            "interval",
        ),
        (
            '[[sources]]\nname = "s"\nverify = "stripe"\nsecret = "x"\n'
            '[sources.catch_up]\napi_key = "env:RELAY_TEST_UNSET_KEY"\n',
            "RELAY_TEST_UNSET_KEY is not set",
        ),
    ],
)
def test_a_catch_up_table_that_cannot_work_is_refused_naming_the_key(
    tmp_path: Path, source: str, error: str
) -> None:
    with pytest.raises(RelayError) as refused:
        load_config(_config(tmp_path, source))
    assert error in str(refused.value)


def test_a_complete_catch_up_table_is_taken(tmp_path: Path) -> None:
    settings = load_config(
        _config(
            tmp_path,
            '[[sources]]\nname = "g"\nverify = "github"\nsecret = "x"\n'
            '[sources.catch_up]\napi_key = "k"\nhook = "orgs/acme/hooks/12"\ninterval = "5m"\n',
        )
    )
    config = settings.sources[0].catch_up
    assert config is not None
    assert (config.hook, config.interval, config.automatic) == ("orgs/acme/hooks/12", 300.0, True)


def test_a_github_app_signs_in_with_an_rs256_jwt() -> None:
    import base64
    import json

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from relay.catchup import github

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    token = github.app_jwt(pem, "123456", T)
    head, claims, signature = token.split(".")

    def unpad(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    assert json.loads(unpad(head)) == {"alg": "RS256", "typ": "JWT"}
    assert json.loads(unpad(claims)) == {"iat": int(T) - 60, "exp": int(T) + 540, "iss": "123456"}
    key.public_key().verify(  # raises if the signature does not hold
        unpad(signature), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
