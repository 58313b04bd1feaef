"""What every store operation means (relay.store.base), run against each backend.

These talk to the store alone: no HTTP, no scheduler. The clock is passed in wherever an
operation takes one, so nothing here waits for time to pass.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace as changed
from pathlib import Path

import pytest

from relay.errors import StorageError
from relay.ids import new_event_id
from relay.records import (
    Action,
    AttemptRecord,
    Claim,
    DeadFilter,
    EventFilter,
    Facts,
    IncidentRecord,
    NewEvent,
    Rejection,
    ReplaySelection,
    Tally,
    Window,
)
from relay.store import Store, open_reader, rollup
from tests.store.conftest import opening, storage

T0 = 1_700_000_000.0


def event(
    n: int,
    destinations: tuple[str, ...] = ("a",),
    key: str | None = None,
    at: float = T0,
    source: str = "s",
    ordering: tuple[str | None, ...] = (),
    event_type: str = "invoice.paid",
    body: bytes | None = None,
) -> NewEvent:
    return NewEvent(
        id=f"evt_{n:06d}",
        source=source,
        received_at=at + n,
        idempotency_key=key,
        event_type=event_type,
        content_type="application/json",
        remote_addr="127.0.0.1",
        headers=json.dumps([["Content-Type", "application/json"]]),
        body=body if body is not None else json.dumps({"n": n}).encode(),
        destinations=destinations,
        ordering_keys=ordering,
    )


def outcome(claim: Claim, state: str, at: float, retry_at: float = 0.0) -> AttemptRecord:
    return AttemptRecord(
        delivery_id=claim.id,
        number=claim.attempt,
        started_at=at,
        duration_ms=1.0,
        status={"delivered": 200, "dead": 422, "pending": 503}[state],
        error=None if state == "delivered" else f"HTTP {422 if state == 'dead' else 503}",
        response_excerpt="ok",
        state=state,
        next_attempt_at=retry_at or at,
        finished_at=at,
        lease=claim.lease,
    )


# -- ingest ----------------------------------------------------------------------------------


async def test_ingest_stores_the_event_and_a_delivery_per_destination(store: Store) -> None:
    stored = await store.ingest(event(1, ("a", "b")))
    assert (stored.event_id, stored.duplicate) == ("evt_000001", False)
    found = await store.read(lambda r: r.event("evt_000001"))
    assert found is not None
    assert sorted(d["destination"] for d in found["deliveries"]) == ["a", "b"]
    assert found["body"] == {"n": 1}


async def test_a_duplicate_key_names_the_original_and_adds_nothing(store: Store) -> None:
    await store.ingest(event(1, key="k"))
    again = await store.ingest(event(2, key="k"))
    other_source = await store.ingest(event(3, key="k", source="t"))
    assert (again.event_id, again.duplicate) == ("evt_000001", True)
    assert other_source.duplicate is False  # keys are per source
    assert await store.pending_count("a") == 2


async def test_an_event_routed_nowhere_is_kept(store: Store) -> None:
    await store.ingest(event(1, ()))
    rows = await store.read(lambda r: r.events(EventFilter(status="unrouted")))
    assert [r["id"] for r in rows] == ["evt_000001"]


async def test_event_lists_search_any_case_and_form_bodies_and_types_by_prefix(
    store: Store,
) -> None:
    """Issue 20: search was case-sensitive, a form body had to be searched URL-encoded,
    and a type filter without * found nothing."""
    await store.ingest(event(1, body=b'{"note": "Invoice for ANA@example.com"}'))
    form = b"From=%2B15550001&Body=hi+ana%40example.com"
    await store.ingest(event(2, body=form, event_type="message.received"))
    await store.ingest(event(3, ("b",), event_type="invoicing.other"))

    async def ids(**given: str) -> list[str]:
        rows = await store.read(lambda r: r.events(EventFilter(**given)))  # type: ignore[arg-type]
        return [row["id"] for row in rows]

    assert await ids(text="ana@example.com") == ["evt_000002", "evt_000001"]
    assert await ids(text="invoice FOR") == ["evt_000001"]
    assert await ids(event_type="invoice") == ["evt_000001"]  # a prefix: invoice.paid
    assert await ids(event_type="invoic*") == ["evt_000003", "evt_000001"]  # a glob
    assert await ids(destination="b") == ["evt_000003"]
    assert await ids(destination="a", status="pending") == ["evt_000002", "evt_000001"]
    assert await ids(destination="a", status="dead") == []


async def test_rejections_are_kept_bounded_and_readable(store: Store) -> None:
    for n in range(3):
        store.note_rejection(Rejection(T0 + n, "s", 401, f"bad {n}", "10.0.0.1", "POST", "[]"))
    await store.ingest(event(1))  # the rejections share the next transaction
    rows = await store.read(lambda r: r.rejections("s", 2))
    assert [r["reason"] for r in rows] == ["bad 2", "bad 1"]


# -- normalized events ---------------------------------------------------------------------


def batch(n: int, keys: list[str], destinations: tuple[str, ...] = ()) -> NewEvent:
    """A request split into items keyed ``keys`` (the request routed to ``destinations``)."""
    request = event(n, destinations)
    request.items = [
        NewEvent(
            id=f"evt_{n:06d}_{key}",
            source="s",
            received_at=request.received_at,
            idempotency_key=key,
            event_type="message.delivered",
            content_type="application/json",
            remote_addr=None,
            headers="[]",
            body=json.dumps({"key": key}).encode(),
            destinations=("a",),
            facts=Facts(parent_id=request.id, provider="p"),
        )
        for key in keys
    ]
    return request


async def test_a_batch_keeps_its_request_and_only_new_items(store: Store) -> None:
    first = await store.ingest(batch(1, ["k1", "k2"], ("raw",)))
    assert (first.event_id, first.duplicate, first.items, first.new_items) == (
        "evt_000001",
        False,
        2,
        2,
    )
    overlap = await store.ingest(batch(2, ["k1", "k2", "k3"]))
    assert (overlap.event_id, overlap.duplicate, overlap.new_items) == ("evt_000002", False, 1)
    again = await store.ingest(batch(3, ["k1", "k2", "k3"], ("raw",)))
    assert (again.event_id, again.duplicate, again.new_items) == ("evt_000001_k1", True, 0)
    assert await store.read(lambda r: r.event("evt_000003")) is None  # nothing kept
    assert await store.pending_count("a") == 3
    assert await store.pending_count("raw") == 1
    request = await store.read(lambda r: r.event("evt_000002"))
    assert request is not None
    assert [i["key"] for i in request["items"]] == ["k3"]
    item = await store.read(lambda r: r.event("evt_000002_k3"))
    assert item is not None
    assert item["normalized"]["parent_id"] == "evt_000002"


def status(n: int, rank: int, kind: str, body: bytes | None = None) -> NewEvent:
    e = event(n, ("keep", "drop"), key=f"s{n}", event_type=kind, body=body)
    e.facts = Facts(provider="p", subject="m-1", rank=rank, channel="sms")
    e.drop_stale = (False, True)
    return e


async def test_a_status_only_moves_forward_and_stale_ones_can_be_dropped(store: Store) -> None:
    read = await store.ingest(status(1, 40, "message.read"))
    # Too large for the memory of recent payloads: its payload is read from the database.
    sent = await store.ingest(status(2, 20, "message.sent", b"{}" + b" " * 300_000))
    assert not read.duplicate
    assert not sent.duplicate
    assert await store.pending_count("keep") == 2
    assert await store.pending_count("drop") == 1  # the stale 'sent' is stored, not sent
    payloads = await store.load_events(["evt_000001", "evt_000002"])
    assert (payloads["evt_000001"].stale, payloads["evt_000002"].stale) == (False, True)
    facts = payloads["evt_000002"].facts
    assert facts is not None
    assert (facts.subject, facts.channel) == ("m-1", "sms")
    found = await store.read(lambda r: r.event("evt_000002"))
    assert found is not None
    assert found["normalized"]["stale"] is True


# -- claims and outcomes ----------------------------------------------------------------------


async def test_claim_leases_due_deliveries_oldest_first(store: Store) -> None:
    for n in range(3):
        await store.ingest(event(n))
    first = await store.claim("a", T0 + 100, 2, lease=30)
    assert [c.event_id for c in first] == ["evt_000000", "evt_000001"]
    assert [c.attempt for c in first] == [1, 1]
    rest = await store.claim("a", T0 + 100, 10, lease=30)
    assert [c.event_id for c in rest] == ["evt_000002"]  # leased ones are not claimed again
    assert await store.claim("b", T0 + 100, 10, lease=30) == []


async def test_an_expired_lease_is_claimed_again(store: Store) -> None:
    await store.ingest(event(1))
    [claim] = await store.claim("a", T0 + 10, 1, lease=30)
    assert await store.claim("a", T0 + 20, 1, lease=30) == []
    [again] = await store.claim("a", T0 + 41, 1, lease=30)  # at least once
    assert (again.id, again.attempt) == (claim.id, 2)


async def test_outcomes_end_the_lease_and_set_the_state(store: Store) -> None:
    for n in range(3):
        await store.ingest(event(n))
    claims = await store.claim("a", T0 + 10, 3, lease=30)
    now = T0 + 11
    await store.record(outcome(claims[0], "delivered", now))
    await store.record(outcome(claims[1], "dead", now))
    await store.record(outcome(claims[2], "pending", now, retry_at=now + 60))
    assert await store.pending_count("a") == 1
    assert await store.next_due("a") == now + 60
    assert await store.claim("a", now + 59, 1, lease=30) == []
    [retry] = await store.claim("a", now + 60, 1, lease=30)
    assert (retry.id, retry.attempt) == (claims[2].id, 2)
    history = await store.read(lambda r: r.event(claims[1].event_id))
    assert history is not None
    [delivery] = history["deliveries"]
    assert (delivery["state"], delivery["history"][0]["status"]) == ("dead", 422)


async def test_an_outcome_counts_only_under_the_lease_it_came_from(store: Store) -> None:
    await store.ingest(event(1))
    [first] = await store.claim("a", T0 + 10, 1, lease=30)
    [second] = await store.claim("a", T0 + 41, 1, lease=30)  # the first lease ran out
    assert second.lease > first.lease
    await store.record(outcome(first, "delivered", T0 + 42))  # late: changes nothing
    assert await store.pending_count("a") == 1
    late = outcome(second, "delivered", T0 + 80)  # an agent's result, after its lease
    await store.record(_strict(late))
    assert await store.pending_count("a") == 1
    await store.record(outcome(second, "delivered", T0 + 42))
    assert await store.pending_count("a") == 0
    found = await store.read(lambda r: r.event("evt_000001"))
    assert found is not None
    assert [a["number"] for a in found["deliveries"][0]["history"]] == [2]


async def test_a_returned_lease_is_due_again_and_not_counted(store: Store) -> None:
    await store.ingest(event(1))
    [claim] = await store.claim("a", T0 + 10, 1, lease=30)
    await store.release(claim, T0 + 11)
    [again] = await store.claim("a", T0 + 12, 1, lease=30)
    assert (again.id, again.attempt) == (claim.id, 1)  # not counted as an attempt
    assert again.lease > claim.lease
    await store.release(claim, T0 + 13)  # the old lease: nothing happens
    assert await store.claim("a", T0 + 14, 1, lease=30) == []


def _strict(record: AttemptRecord) -> AttemptRecord:
    from dataclasses import replace

    return replace(record, strict=True)


async def test_next_due_counts_a_lease_until_it_ends(store: Store) -> None:
    await store.ingest(event(1))
    assert await store.next_due("a") == T0 + 1
    await store.claim("a", T0 + 5, 1, lease=30)
    assert await store.next_due("a") == T0 + 35
    assert await store.next_due("nowhere") is None


async def test_ordered_deliveries_wait_for_the_earlier_one_of_their_key(store: Store) -> None:
    await store.ingest(event(1, ordering=("s:k1",)))
    await store.ingest(event(2, ordering=("s:k1",)))
    await store.ingest(event(3, ordering=("s:k2",)))
    claims = await store.claim("a", T0 + 10, 10, lease=30)
    assert [c.event_id for c in claims] == ["evt_000001", "evt_000003"]
    await store.record(outcome(claims[0], "delivered", T0 + 11))
    [next_one] = await store.claim("a", T0 + 12, 10, lease=30)
    assert next_one.event_id == "evt_000002"


async def test_load_events_gives_what_a_delivery_sends(store: Store) -> None:
    await store.ingest(event(1, body=b"\x00raw bytes\xff"))
    found = await store.load_events(["evt_000001", "evt_missing"])
    assert list(found) == ["evt_000001"]
    payload = found["evt_000001"]
    assert (payload.source, payload.body, payload.content_type) == (
        "s",
        b"\x00raw bytes\xff",
        "application/json",
    )


# -- operators' changes -----------------------------------------------------------------------


async def test_pauses_are_kept(store: Store) -> None:
    await store.set_paused("a", True, "broken")
    await store.set_paused("b", True, None)
    await store.set_paused("b", False, None)
    assert await store.paused_destinations() == {"a": "broken"}


async def _dead(store: Store, n: int, destination: str = "a") -> int:
    await store.ingest(event(n, (destination,)))
    [claim] = await store.claim(destination, T0 + 100 + n, 1, lease=30)
    await store.record(outcome(claim, "dead", T0 + 101 + n))
    return claim.id


async def replay(
    store: Store, sel: ReplaySelection, key: str | None = None, now: float = T0 + 200
) -> dict[str, object]:
    """What Control does for a selection whose targets all have a destination."""
    targets = await store.read(lambda r: r.replay_targets(sel))
    action = Action("test", None, "replay", request_id=key)
    answer, repeated = await store.replay(targets, action, sel.again, now)
    return answer | {"repeated": repeated}


async def test_replay_makes_one_new_delivery_per_dead_one_once(store: Store) -> None:
    first = await _dead(store, 1)
    await _dead(store, 2)
    await _dead(store, 3, destination="b")
    answer = await replay(store, ReplaySelection(destination="a"))
    assert (answer["replayed"], answer["destinations"]) == (2, {"a": 2})
    # Which deliveries it made, for the audit trail: their ids, and the range.
    made = answer["deliveries"]
    assert isinstance(made, list)
    assert len(made) == 2
    assert (answer["first_delivery"], answer["last_delivery"]) == (min(made), max(made))
    for delivery_id in made:
        found = await store.read(lambda r, i=delivery_id: r.dead(DeadFilter(deliveries=(i,))))
        assert found == []  # pending, not dead
    states = await store.read(lambda r: r.event("evt_000001"))
    assert states is not None
    assert sorted(d["id"] for d in states["deliveries"] if d["state"] == "pending") == [
        i for i in made if i in {d["id"] for d in states["deliveries"]}
    ]
    again = await replay(store, ReplaySelection(destination="a"))
    assert again["replayed"] == 0  # already replayed: a filter never doubles a dead one
    assert await store.pending_count("a") == 2
    by_hand = await replay(store, ReplaySelection(delivery=first))
    assert by_hand["replayed"] == 0  # by hand too: it has a replay already
    forced = await replay(store, ReplaySelection(delivery=first, again=True))
    assert forced["replayed"] == 1
    found = await store.read(lambda r: r.event("evt_000001"))
    assert found is not None
    assert [d["state"] for d in found["deliveries"]] == ["dead", "pending", "pending"]
    assert found["deliveries"][1]["replay_of"] == first  # the dead one stays as history


async def test_a_dead_replay_can_be_replayed_but_not_its_original(store: Store) -> None:
    await _dead(store, 1)
    await replay(store, ReplaySelection())
    [claim] = await store.claim("a", T0 + 300, 1, lease=30)
    await store.record(outcome(claim, "dead", T0 + 301))  # the replay died too
    answer = await replay(store, ReplaySelection())
    assert answer["replayed"] == 1  # the replay, once; not the original beside it
    # With again, both dead deliveries are taken, but the event goes once (issue 29: one
    # delivery per event and destination per request, whatever its history).
    assert (await replay(store, ReplaySelection(again=True)))["replayed"] == 1


async def test_the_same_request_replays_once(store: Store) -> None:
    await _dead(store, 1)
    first = await replay(store, ReplaySelection(delivery=1), key="k-1")
    second = await replay(store, ReplaySelection(delivery=1), key="k-1")
    assert (first["replayed"], first["repeated"]) == (1, False)
    assert (second["replayed"], second["repeated"]) == (1, True)  # the first answer
    assert await store.pending_count("a") == 1
    again = ReplaySelection(delivery=1, again=True)  # once more, on purpose: another key
    both = await asyncio.gather(*(replay(store, again, key="k-2") for _ in range(5)))
    assert sorted(a["repeated"] for a in both) == [False, True, True, True, True]
    assert await store.pending_count("a") == 2
    audit = await store.read(lambda r: r.audit())
    assert [(a["action"], a["result"]["replayed"]) for a in audit] == [("replay", 1)] * 2


async def test_replay_targets_by_state(store: Store) -> None:
    await _dead(store, 1)  # a dead delivery to a
    await store.ingest(event(2))  # delivered below
    [claim] = await store.claim("a", T0 + 500, 1, lease=30)
    await store.record(outcome(claim, "delivered", T0 + 501))
    await store.ingest(event(3, ()))  # went nowhere
    await store.ingest(event(4))  # pending: no state takes it but "any"

    async def targets(sel: ReplaySelection) -> list[tuple[str, str | None, int | None]]:
        found = await store.read(lambda r: r.replay_targets(sel))
        return sorted((t.event_id, t.destination, t.replay_of) for t in found)

    assert await targets(ReplaySelection()) == [("evt_000001", "a", 1)]
    assert await targets(ReplaySelection(state="delivered")) == [("evt_000002", "a", 2)]
    assert await targets(ReplaySelection(state="unrouted")) == [("evt_000003", None, None)]
    assert await targets(ReplaySelection(state="any")) == [
        ("evt_000001", "a", 1),
        ("evt_000002", "a", 2),
        ("evt_000003", None, None),
        ("evt_000004", "a", 3),
    ]
    assert await targets(ReplaySelection(event="evt_000002")) == [("evt_000002", "a", 2)]
    window = ReplaySelection(state="any", since=T0 + 2, until=T0 + 4)
    assert [t[0] for t in await targets(window)] == ["evt_000002", "evt_000003"]
    assert await targets(ReplaySelection(source="other", state="any")) == []
    with pytest.raises(ValueError, match="state"):
        ReplaySelection(state="lost")


async def test_audit_rows_are_kept_and_pruned(store: Store) -> None:
    await store.audit(Action("cli:ann@host", "unix", "pause", "a", {"reason": "x"}), {"ok": 1}, T0)
    await store.audit(Action("console", "10.0.0.1", "sign-in"), {}, T0 + 10)
    rows = await store.read(lambda r: r.audit())
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        ("console", "sign-in", None),
        ("cli:ann@host", "pause", "a"),
    ]
    assert rows[1]["params"] == {"reason": "x"}
    assert rows[1]["result"] == {"ok": 1}
    assert [r["action"] for r in await store.read(lambda r: r.audit(since=T0 + 5))] == ["sign-in"]
    assert await store.prune("audit", T0 + 5, 10, T0 + 100) == 1


async def test_last_received_per_source(store: Store) -> None:
    await store.ingest(event(1, source="s"))
    await store.ingest(event(5, source="s"))
    found = await store.read(lambda r: r.last_received(["s", "never"]))
    assert found == {"s": T0 + 5}


async def test_prune_removes_only_finished_events_in_bounded_batches(store: Store) -> None:
    for n in range(5):
        await store.ingest(event(n))
    claims = await store.claim("a", T0 + 10, 3, lease=30)
    for claim in claims:
        await store.record(outcome(claim, "delivered", T0 + 11))
    await store.ingest(event(9, ()))  # routed nowhere: finished too
    assert await store.prune("delivered", T0 + 1_000, 2, T0 + 2_000) == 2
    assert await store.prune("delivered", T0 + 1_000, 10, T0 + 2_000) == 2
    assert await store.pending_count("a") == 2  # pending ones are never pruned
    ids = await store.read(lambda r: [e["id"] for e in r.events(EventFilter())])
    assert ids == ["evt_000004", "evt_000003"]


async def test_prune_dead_rejections_and_redaction(store: Store) -> None:
    await _dead(store, 1)
    await store.ingest(event(2))
    [claim] = await store.claim("a", T0 + 500, 1, lease=30)
    await store.record(outcome(claim, "delivered", T0 + 501))
    store.note_rejection(Rejection(T0, "s", 401, "bad", None, "POST", "[]"))
    await store.ingest(event(3))
    assert await store.prune("redacted", T0 + 1_000, 10, T0 + 2_000) == 1
    redacted = await store.read(lambda r: r.event("evt_000002"))
    assert redacted is not None
    assert (redacted["body"], redacted["redacted_at"]) == ("", T0 + 2_000)
    assert await store.prune("dead", T0 + 1_000, 10, T0 + 2_000) == 1
    assert await store.prune("rejections", T0 + 1, 10, T0 + 2_000) == 1
    assert await store.read(lambda r: r.rejections()) == []


async def test_gauges_count_the_backlog_and_dead_not_yet_replayed(store: Store) -> None:
    await _dead(store, 1)
    await _dead(store, 2)
    await store.ingest(event(3, ("a", "b")))
    await replay(store, ReplaySelection(deliveries=(1,)), now=T0 + 300)
    gauges = await store.gauges()
    assert gauges.dead == {"a": 1}
    assert gauges.pending == {"a": (2, T0 + 3), "b": (1, T0 + 3)}  # the replay is pending


# -- reads for people -------------------------------------------------------------------------


async def test_event_lists_filter_and_page_by_keyset(store: Store) -> None:
    for n in range(5):
        await store.ingest(event(n, key=f"k{n}", event_type="invoice.paid" if n % 2 else "ping"))
    paid = await store.read(lambda r: r.events(EventFilter(event_type="invoice.*")))
    assert [e["id"] for e in paid] == ["evt_000003", "evt_000001"]
    page = await store.read(lambda r: r.events(EventFilter(limit=2)))
    older = await store.read(lambda r: r.events(EventFilter(limit=2, before=page[-1]["id"])))
    assert [e["id"] for e in page + older] == [f"evt_{n:06d}" for n in (4, 3, 2, 1)]
    by_key = await store.read(lambda r: r.events(EventFilter(key="k2")))
    assert [e["id"] for e in by_key] == ["evt_000002"]
    by_text = await store.read(lambda r: r.events(EventFilter(text='"n": 4')))
    assert [e["id"] for e in by_text] == ["evt_000004"]
    with pytest.raises(ValueError, match="status"):
        EventFilter(status="lost")


async def test_a_time_range_lists_the_events_received_in_it(store: Store) -> None:
    """From/Until on received_at, with the ids relay mints (they start with the time, which
    the list uses to walk the primary key from the range's end: relay.ids.id_floor)."""
    ids = []
    for n in range(6):
        e = changed(event(n, at=T0 + 100 * n - n), id=new_event_id(T0 + 100 * n))
        await store.ingest(e)
        ids.append(e.id)
    found = await store.read(lambda r: r.events(EventFilter(since=T0 + 100, until=T0 + 400)))
    assert [e["id"] for e in found] == ids[3:0:-1]  # 100, 200, 300: newest first
    edges = await store.read(lambda r: r.events(EventFilter(since=T0 + 300, until=T0 + 300.001)))
    assert [e["id"] for e in edges] == [ids[3]]
    page = await store.read(lambda r: r.events(EventFilter(since=T0, limit=2)))
    assert [e["id"] for e in page] == [ids[5], ids[4]]


async def test_tail_reads_what_was_committed_after_in_commit_order(store: Store) -> None:
    assert await store.read(lambda r: r.latest_position()) == 0
    await store.ingest(event(5))
    start = await store.read(lambda r: r.latest_position())
    for n in (7, 1, 6):  # ids out of order: 1 is older than 5, but committed later
        await store.ingest(event(n, source="s" if n != 6 else "t"))
    after = await store.read(lambda r: r.events_after(start, None, 10))
    assert [e["id"] for e in after] == ["evt_000007", "evt_000001", "evt_000006"]
    only_t = await store.read(lambda r: r.events_after(0, "t", 10))
    assert [e["id"] for e in only_t] == ["evt_000006"]
    assert await store.read(lambda r: r.latest_position()) == after[-1]["position"]


async def test_dead_lists_counts_and_groups(store: Store) -> None:
    for n in range(3):
        await _dead(store, n, destination="a" if n else "b")
    dead = await store.read(lambda r: r.dead(DeadFilter(destination="a")))
    assert [d["event_id"] for d in dead] == ["evt_000002", "evt_000001"]
    assert await store.read(lambda r: r.count_dead(DeadFilter())) == 3
    assert await store.read(lambda r: r.dead_by_destination(DeadFilter())) == {"a": 2, "b": 1}
    outcomes = await store.read(lambda r: r.dead_outcomes(DeadFilter(destination="a")))
    assert outcomes == [{"status": 422, "error": "HTTP 422", "count": 2, "last_died_at": T0 + 103}]
    groups = await store.read(lambda r: r.dead_groups())
    assert groups[0] == {
        "destination": "a",
        "error": "HTTP 422",
        "count": 2,
        "last_died_at": T0 + 103,
    }


async def test_stats_per_source_and_destination(store: Store) -> None:
    now = T0 + 1_000
    await store.ingest(event(1, ("a", "b"), at=now - 100))
    await _dead(store, 2, destination="b")
    store.note_rejection(Rejection(now - 10, "s", 401, "bad", None, "POST", "[]"))
    await store.set_paused("a", True, "x")
    stats = await store.read(lambda r: r.stats(now))
    assert stats["sources"]["s"] == {"events_last_hour": 2, "rejected_last_hour": 1}
    a, b = stats["destinations"]["a"], stats["destinations"]["b"]
    assert (a["pending"], a["dead"], a["paused"]) == (1, 0, True)
    assert (b["pending"], b["dead"]) == (1, 1)
    assert a["oldest_pending_seconds"] == 99


async def test_backup_is_a_consistent_copy(store: Store, backend: str, tmp_path: Path) -> None:
    for n in range(3):
        await store.ingest(event(n))
    target = tmp_path / "copy.db"
    if backend in ("postgresql", "memory"):  # the server's own tools do it, and say so
        with pytest.raises(StorageError, match="pg_dump" if backend == "postgresql" else "no file"):
            await store.read(lambda r: r.backup(target))
        assert not target.exists()
        return
    size = await store.read(lambda r: r.backup(target))
    assert size == target.stat().st_size > 0
    with open_reader(target) as copy:
        assert len(copy.events(EventFilter())) == 3
    with pytest.raises(StorageError, match="already exists"):
        await store.read(lambda r: r.backup(target))


async def test_check_commits_and_reports(store: Store) -> None:
    assert store.healthy
    assert await store.check(1.0) is None
    database, _ = store.size()
    assert database > 0


async def test_reopening_releases_the_leases_of_the_last_process(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On SQLite (one relay per file) every lease left is stale and released at start; on
    PostgreSQL another relay may hold it, so nothing is released: it is taken again once
    it expires."""
    config = storage(backend, request, tmp_path)
    first = await opening(backend, config)
    first.start()
    await first.ingest(event(1))
    await first.claim("a", T0 + 10, 1, lease=3_600)
    await first.close()
    second = await opening(backend, config)
    second.start()
    try:
        if backend == "postgresql":
            assert second.released == 0
            assert await second.claim("a", T0 + 11, 1, lease=30) == []
            [claim] = await second.claim("a", T0 + 10 + 3_601, 1, lease=30)
        else:
            assert second.released == 1
            [claim] = await second.claim("a", T0 + 11, 1, lease=30)
        assert claim.attempt == 2
    finally:
        await second.close()


async def test_the_minute_rollup_counts_what_each_commit_applied(store: Store) -> None:
    """The overview reads these counts instead of scanning: events received per source,
    deliveries queued, delivered (with their latency bucket), retried and dead per
    destination, requests refused; an outcome under a stale lease adds nothing."""
    at = (T0 // 60 + 100) * 60  # the start of a minute
    for n in range(3):
        await store.ingest(event(n, ("a", "b"), at=at))  # received at at+0, at+1, at+2
    store.note_rejection(Rejection(at + 5, "s", 401, "bad signature", None, "POST", "[]"))
    claims = await store.claim("a", at + 10, 10, lease=30)
    assert len(claims) == 3
    await store.record(outcome(claims[0], "delivered", at + 10.02))  # queued at+0: 10 s
    await store.record(outcome(claims[1], "dead", at + 11))
    await store.record(outcome(claims[2], "pending", at + 12, retry_at=at + 100))
    await store.record(changed(outcome(claims[0], "delivered", at + 13), lease=claims[0].lease + 7))
    rows = await store.read(lambda r: r.minutes(at + 30))
    minute = rollup.minute_of(at)
    counts = {(kind, name, metric): n for m, kind, name, metric, n in rows if m == minute}
    latency = f"lat{rollup.bucket(10.02)}"  # queued at at+0, delivered at at+10.02
    assert counts == {
        ("source", "s", "received"): 3,
        ("source", "s", "rejected"): 1,
        ("destination", "a", "queued"): 3,
        ("destination", "b", "queued"): 3,
        ("destination", "a", "delivered"): 1,
        ("destination", "a", latency): 1,
        ("destination", "a", "dead"): 1,
        ("destination", "a", "retried"): 1,
    }
    s = rollup.series(rows, at + 30)[("destination", "a")]
    assert (s.total("delivered"), s.total("dead"), s.total("retried")) == (1, 1, 1)
    assert s.p95() == rollup.LATENCY_BOUNDS[rollup.bucket(10.02)]
    assert await store.read(lambda r: r.backlog()) == {
        "a": (1, at + 2, 1),
        "b": (3, at, 0),
    }


async def test_state_filters_list_the_same_whether_few_or_many_are_in_the_state(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reader.events starts from the deliveries in a state when they are few, and walks the
    events newest first when they are many (clauses.SPARSE): both give the same list."""
    from relay.store import clauses

    for n in range(6):
        await store.ingest(event(n, ("a", "b") if n % 2 else ("a",)))
    for destination, n in (("a", 1), ("b", 3)):
        await _dead(store, 10 + n, destination)
    [claim] = await store.claim("a", T0 + 200, 1, lease=30)
    await store.record(outcome(claim, "delivered", T0 + 201))
    filters = [
        EventFilter(status=s, destination=d)
        for s in ("pending", "dead", "delivered")
        for d in (None, "a", "b")
    ]

    async def lists() -> list[list[str]]:
        return [[e["id"] for e in await store.read(lambda r, f=f: r.events(f))] for f in filters]

    monkeypatch.setattr(clauses, "SPARSE", 1_000_000)
    from_deliveries = await lists()
    monkeypatch.setattr(clauses, "SPARSE", 0)
    walked = await lists()
    assert from_deliveries == walked
    assert sum(map(len, walked)) > 0
    dead_at_b = walked[filters.index(EventFilter(status="dead", destination="b"))]
    assert len(dead_at_b) == 1


async def test_dead_letters_and_replays_filter_by_key_and_body_text(store: Store) -> None:
    """The dead letters list and "Replay the N matching" take the event's idempotency key
    and text in its body (any case; a form body decoded), and select the same ones."""
    bodies = [b'{"customer": "ACME"}', b"email=ops%40acme.example&x=1", b'{"customer": "other"}']
    for n, body in enumerate(bodies):
        await store.ingest(event(n, key=f"key-{n}", body=body))
        [claim] = await store.claim("a", T0 + 100 + n, 1, lease=30)
        await store.record(outcome(claim, "dead", T0 + 101 + n))
    cases = [
        ({"text": "acme"}, {"evt_000000", "evt_000001"}),
        ({"text": "ops@acme"}, {"evt_000001"}),
        ({"key": "key-2"}, {"evt_000002"}),
        ({"key": "key-2", "text": "acme"}, set()),
    ]
    for given, expected in cases:
        listed = await store.read(lambda r, g=given: r.dead(DeadFilter(**g)))
        assert {d["event_id"] for d in listed} == expected, given
        targets = await store.read(
            lambda r, g=given: r.replay_targets(ReplaySelection(state="dead", **g))
        )
        assert {t.event_id for t in targets} == expected, given


async def test_a_type_without_a_star_is_a_prefix_in_every_list_and_replay(store: Store) -> None:
    """Issue 29: `invoice` found invoice.paid on the events list but nothing among the dead
    letters (the console's own walkthrough) or in a replay filter: one rule everywhere."""
    from relay.records import EventFilter

    await _dead(store, 1)  # invoice.paid
    for given, expected in (("invoice", 1), ("invoice.*", 1), ("invoice.paid", 1), ("inv", 1)):
        found = await store.read(lambda r, g=given: r.count_dead(DeadFilter(event_type=g)))
        assert found == expected, given
        listed = await store.read(lambda r, g=given: r.events(EventFilter(event_type=g)))
        assert len(listed) == expected, given
        targets = await store.read(
            lambda r, g=given: r.replay_targets(ReplaySelection(event_type=g))
        )
        assert len(targets) == expected, given
    assert await store.read(lambda r: r.count_dead(DeadFilter(event_type="order"))) == 0


# -- catch-up ----------------------------------------------------------------------------------


async def test_the_last_beat_is_the_newest_of_any_relay(store: Store) -> None:
    assert await store.last_beat() is None
    await store.beat("one", T0, T0 + 10)
    await store.beat("two", T0 + 5, T0 + 30)
    await store.beat("one", T0, T0 + 20)  # a beat moves its relay's row forward
    assert await store.last_beat() == T0 + 30
    await store.beat("three", T0 + 50 * 86400, T0 + 50 * 86400)  # forgets month-old beats
    assert await store.last_beat() == T0 + 50 * 86400


async def test_a_window_is_recorded_tried_and_closed(store: Store) -> None:
    first = await store.open_window(Window("s", T0, T0 + 60, "downtime"), T0 + 61)
    assert first is not None
    # Another relay found the same outage: the window is recorded once.
    assert await store.open_window(Window("s", T0, T0 + 70, "downtime"), T0 + 62) is None
    manual = await store.open_window(Window("s", T0, T0 + 60, "manual"), T0 + 63)
    assert manual is not None
    assert manual != first
    await store.tried_window(first)
    await store.close_window(first, "open", Tally(), "HTTP 503 from the API", T0 + 64)
    found = {w.id: w for w in await store.open_windows()}
    assert set(found) == {first, manual}
    assert (found[first].tries, found[first].error) == (1, "HTTP 503 from the API")
    assert (found[first].since, found[first].until, found[first].reason) == (
        T0,
        T0 + 60,
        "downtime",
    )
    await store.close_window(first, "done", Tally(5, 3, 2, 0), None, T0 + 65)
    await store.close_window(manual, "failed", Tally(), "HTTP 401", T0 + 66)
    assert await store.open_windows() == []


async def test_known_keys_are_the_sources_own(store: Store) -> None:
    await store.ingest(event(1, key="evt_a"))
    await store.ingest(event(2, key="evt_b", source="t"))
    keys = ["evt_a", "evt_b", "evt_c"] + [f"x{n}" for n in range(1200)]  # several statements
    assert await store.read(lambda r: r.known_keys("s", keys)) == {"evt_a"}


async def test_an_events_origin_is_kept_and_sent_with_it(store: Store) -> None:
    await store.ingest(changed(event(1, key="evt_a"), origin="catch-up"))
    await store.ingest(event(2))
    loaded = await store.load_events(["evt_000001", "evt_000002"])
    assert (loaded["evt_000001"].origin, loaded["evt_000002"].origin) == ("catch-up", None)
    shown = await store.read(lambda r: r.event("evt_000001"))
    assert shown is not None
    assert shown["origin"] == "catch-up"


# -- incidents --------------------------------------------------------------------------------


async def test_an_incident_is_recorded_updated_listed_and_pruned(store: Store) -> None:
    samples = json.dumps({"HTTP 5xx": {"status": 500, "body": "down", "event_id": "e1"}})
    opened = IncidentRecord(
        "billing", "failing", "open", T0, T0, 1, "HTTP 5xx", '{"HTTP 5xx": 1}', samples
    )
    first = await store.save_incident(opened)
    other = await store.save_incident(changed(opened, subject="crm", since=T0 + 1))
    assert other != first
    resolved = changed(
        opened,
        id=first,
        status="resolved",
        last_failure=T0 + 180,
        failures=36,
        counts='{"HTTP 5xx": 36}',
        resolved_at=T0 + 300,
        left_to_replay=0,
    )
    assert await store.save_incident(resolved) == first
    open_now = await store.read(lambda r: r.incidents("open"))
    assert [(i["subject"], i["status"]) for i in open_now] == [("crm", "open")]
    [ended] = await store.read(lambda r: r.incidents("resolved"))
    assert (ended["id"], ended["failures"], ended["resolved_at"]) == (first, 36, T0 + 300)
    assert ended["counts"] == {"HTTP 5xx": 36}
    assert ended["samples"]["HTTP 5xx"]["body"] == "down"
    assert [i["id"] for i in await store.read(lambda r: r.incidents())] == [other, first]
    page = await store.read(lambda r: r.incidents(None, 10, other))
    assert [i["id"] for i in page] == [first]
    assert await store.prune("incidents", T0 + 301, 10, T0 + 400) == 1  # resolved only
    assert [i["id"] for i in await store.read(lambda r: r.incidents())] == [other]
