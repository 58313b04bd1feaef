"""The shared event types and the status state machine. Pure: values in, values out.

A message's status only moves forward: ``queued < deferred < sent < delivered < read``,
and ``failed`` / ``bounced`` end it. A skipped step (``read`` with no ``delivered``, as
WhatsApp sends when both happen at once) is a valid forward move; a failure after a
delivery wins (rank alone decides, as the reference's default). Events that are about a
message but not its delivery (opened, clicked, complained, received, subscription changes)
never move it and are never stale.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = "relay.event.v1"

TERMINAL = 50
RANKS: dict[str, int] = {
    "message.queued": 10,
    "message.deferred": 15,
    "message.sent": 20,
    "message.delivered": 30,
    "message.read": 40,
    "message.failed": TERMINAL,
    "message.bounced": TERMINAL,
}
# Types that are recorded but never move a status.
OTHER = (
    "message.received",
    "message.opened",
    "message.clicked",
    "message.complained",
    "contact.unsubscribed",
    "contact.resubscribed",
)
TYPES = (*RANKS, *OTHER)


def rank_of(kind: str | None) -> int | None:
    """The rank of a status type; None for a type that does not move a status."""
    return RANKS.get(kind) if kind is not None else None


@dataclass(frozen=True, slots=True)
class Verdict:
    moves: bool  # the subject's status becomes this event's
    stale: bool  # it would have moved the status backwards (or past an end)


def transition(current: int | None, new: int | None) -> Verdict:
    """What an event of rank ``new`` does to a subject whose status has rank ``current``
    (None: no status yet)."""
    if new is None:
        return Verdict(moves=False, stale=False)
    if current is None:
        return Verdict(moves=True, stale=False)
    # Nothing ranks above an end, so a failure or bounce is never left; the same step
    # again (another copy of 'sent' with its own id, a second bounce) is not backwards.
    return Verdict(moves=new > current, stale=new < current)
