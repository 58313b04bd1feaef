"""What a lane shares with the other relays on one database: its pause and its circuit.

A relay that pauses a destination, or whose circuit for it opens or closes, writes that to
the database (``share``); every relay reads it back on its housekeeping tick and each lane
adopts what changed elsewhere (``adoption``, a pure decision, table-tested in
``tests/test_lane.py``). On SQLite, one relay, there is nobody to tell.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from relay.circuit import Circuit
from relay.errors import StorageUnavailable
from relay.store import Store

Shared = tuple[str, float | None]  # a circuit's (state, opened_at) as last shared
Remote = tuple[str, float | None, float | None]  # (state, opened_at, failing_since) in the db


@dataclass(frozen=True, slots=True)
class Adoption:
    """What a lane takes over from the cluster."""

    pause: str | None = None  # pause it, for this reason
    resume: bool = False  # resume it (which also resets its circuit)
    shared: Shared | None = None  # the circuit as now shared (None: unchanged)
    trip: tuple[float, float | None] | None = None  # open the circuit: (opened_at, failing)
    close: bool = False  # close the circuit


def adoption(
    *,
    paused: str | None,
    pinned: bool,
    remote_paused: str | None,
    shared: Shared,
    circuit: str | None,
    remote_circuit: Remote | None,
) -> Adoption:
    """``paused``: the lane's pause; ``pinned``: paused by its config (the cluster does not
    resume it, nor pause it again); ``circuit``: the lane's circuit state (None: it has no
    breaker); ``shared``: what was last shared of it."""
    pause, resume = None, False
    if not pinned and remote_paused is not None and paused is None:
        pause = remote_paused
    elif not pinned and remote_paused is None and paused is not None:
        resume, shared = True, ("closed", None)
        circuit = "closed" if circuit is not None else None  # a resume resets it
    if remote_circuit is None or circuit is None:
        return Adoption(pause, resume, shared if resume else None)
    state, opened_at, failing_since = remote_circuit
    if (state, opened_at) == shared:
        return Adoption(pause, resume, shared if resume else None)
    trip = None
    if state == "open" and opened_at is not None and circuit == "closed":
        trip = (opened_at, failing_since)
    close = state == "closed" and circuit != "closed"
    return Adoption(pause, resume, (state, opened_at), trip, close)


async def share(store: Store, name: str, circuit: Circuit | None, shared: Shared) -> Shared:
    """Tell the other relays on the database that this circuit opened or closed; returns
    what is now shared. A half-open circuit is this relay's own probe: not shared."""
    if circuit is None or not store.shared or circuit.state == "half-open":
        return shared
    now_shared = (circuit.state, circuit.opened_at)
    if now_shared == shared:
        return shared
    with contextlib.suppress(StorageUnavailable):
        await store.set_circuit(name, circuit.state, circuit.opened_at, circuit.failing_since)
    return now_shared
