"""What a lane takes over from the other relays on its database (relay.scheduler.cluster
.adoption), as a table: a pause or resume there, a circuit that opened or closed there."""

from __future__ import annotations

from typing import Any

import pytest

from relay.scheduler.cluster import Adoption, adoption

BASE: dict[str, Any] = {
    "paused": None,
    "pinned": False,
    "remote_paused": None,
    "shared": ("closed", None),
    "circuit": "closed",
    "remote_circuit": None,
}

CASES: list[tuple[str, dict[str, Any], Adoption]] = [
    ("nothing changed", {}, Adoption()),
    ("paused elsewhere: pause", {"remote_paused": "broken"}, Adoption(pause="broken")),
    ("already paused here: keep ours", {"paused": "ours", "remote_paused": "theirs"}, Adoption()),
    (
        "resumed elsewhere: resume, the circuit shared as closed",
        {"paused": "broken"},
        Adoption(resume=True, shared=("closed", None)),
    ),
    (
        "paused by its config: never resumed by the cluster",
        {"paused": "config", "pinned": True},
        Adoption(),
    ),
    ("paused by its config: not paused again", {"pinned": True, "remote_paused": "x"}, Adoption()),
    (
        "a circuit opened elsewhere: trip ours",
        {"remote_circuit": ("open", 100.0, 40.0)},
        Adoption(shared=("open", 100.0), trip=(100.0, 40.0)),
    ),
    (
        "the same opening again: nothing",
        {"shared": ("open", 100.0), "circuit": "open", "remote_circuit": ("open", 100.0, 40.0)},
        Adoption(),
    ),
    (
        "opened elsewhere while ours is already open: share it, no trip",
        {"circuit": "open", "remote_circuit": ("open", 200.0, 40.0)},
        Adoption(shared=("open", 200.0)),
    ),
    (
        "closed elsewhere: close ours",
        {"shared": ("open", 100.0), "circuit": "open", "remote_circuit": ("closed", None, None)},
        Adoption(shared=("closed", None), close=True),
    ),
    (
        "half-open here, closed elsewhere: close ours",
        {
            "shared": ("open", 100.0),
            "circuit": "half-open",
            "remote_circuit": ("closed", None, None),
        },
        Adoption(shared=("closed", None), close=True),
    ),
    (
        "no breaker here: circuits are not adopted",
        {"circuit": None, "remote_circuit": ("open", 100.0, 40.0)},
        Adoption(),
    ),
    (
        "resumed elsewhere with its circuit open there: resume, then trip the reset circuit",
        {"paused": "broken", "circuit": "open", "remote_circuit": ("open", 300.0, 40.0)},
        Adoption(resume=True, shared=("open", 300.0), trip=(300.0, 40.0)),
    ),
]


@pytest.mark.parametrize(("name", "changes", "expected"), CASES, ids=[c[0] for c in CASES])
def test_adoption(name: str, changes: dict[str, Any], expected: Adoption) -> None:
    assert adoption(**(BASE | changes)) == expected
