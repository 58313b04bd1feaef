"""Times as people type them into the console's From/Until and the CLI's --since/--until
(issue 29: `2026-12-07 06:27` was refused; only `…T06:27:00Z` and `2h` were taken)."""

from __future__ import annotations

import pytest

from relay.records import since_to_time

NOW = 1796624820.0  # 2026-12-07T06:27:00Z


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-12-07 06:27", NOW),
        ("2026-12-07T06:27", NOW),
        ("2026-12-07t06:27", NOW),
        ("2026-12-07 06:27:05", NOW + 5),
        ("2026-12-07 06:27:05.5", NOW + 5.5),
        ("2026-12-07T06:27:00Z", NOW),
        ("2026-12-07 06:27 UTC", NOW),
        ("2026-12-07 06:27+01:00", NOW - 3600),
        ("2026-12-07 06:27 -0130", NOW + 5400),
        ("2026-12-07", NOW - (6 * 3600 + 27 * 60)),
        ("  2026-12-07 06:27  ", NOW),
        (str(int(NOW)), NOW),
        ("2h", NOW - 7200),
        ("90m", NOW - 5400),
    ],
)
def test_a_time_is_read_as_people_type_it(given: str, expected: float) -> None:
    assert since_to_time(given, now=NOW) == expected


@pytest.mark.parametrize("given", ["2026-13-07", "2026-12-07 25:00", "yesterday", "06:27"])
def test_what_is_not_a_time_is_refused_with_the_forms_it_takes(given: str) -> None:
    with pytest.raises(ValueError, match="2026-12-07 06:27"):
        since_to_time(given, now=NOW)
