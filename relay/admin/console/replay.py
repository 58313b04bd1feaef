"""The console's replay forms, one handler: a selection of dead letters, the events list's
filter, the dead letters list's filter, or a dead-letter group."""

from __future__ import annotations

import hashlib

from aiohttp import web
from multidict import MultiDictProxy

from relay.admin.console import auth
from relay.admin.console.notices import told
from relay.admin.console.pages import Page, Pages, as_float, local_path, redirect
from relay.errors import KeyReused
from relay.records import ReplaySelection

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]


class Replays:
    def __init__(self, pages: Pages) -> None:
        self._surface = pages.surface

    def pages(self) -> list[Page]:
        return [Page("POST", "/ui/replay", self.replay)]

    async def replay(self, request: web.Request) -> web.Response:
        """Every replay form carries a request id made when the page was rendered: sent
        twice (a double click, a reload and resubmit), it replays once. "Replay all N" also
        carries N and when the last of them died: if the set changed meanwhile, it says so
        instead of replaying something else."""
        form = await request.post()
        back = local_path(str(form.get("back", "/ui/dead")))
        key = str(form.get("request", "")) or None
        who = auth.who(request)
        ids = tuple(int(str(v)) for v in form.getall("delivery", []) if str(v).isdigit())
        if ids:
            sel = ReplaySelection(deliveries=ids)
            if key is not None:  # the same form with another selection is another request
                chosen = ",".join(str(i) for i in sorted(ids)).encode()
                key = f"{key}:{hashlib.sha256(chosen).hexdigest()[:16]}"
        else:
            chosen_sel = selection(form)
            if chosen_sel is None:
                return redirect(told(back, "nothing"))
            sel = chosen_sel
            expect = as_float(form.get("expect"))
            if expect is not None:
                seen = await self._surface.replay(sel, who, dry_run=True)
                if seen["matched"] != int(expect):
                    return redirect(told(back, "changed", n=seen["matched"], shown=int(expect)))
        try:
            answer = await self._surface.replay(sel, who, key)
        except KeyReused:
            return redirect(told(back, "reused"))
        if answer.get("repeated"):
            return redirect(told(back, "repeated"))
        return redirect(told(back, "replayed", n=int(answer["replayed"])))


def selection(form: Form) -> ReplaySelection | None:
    """What a filter form selects (None: it names nothing to replay)."""

    def text(name: str, default: str = "") -> str | None:
        return str(form.get(name, default)) or None

    if form.get("events"):  # the events list's "Replay the N": its filter, exactly
        return ReplaySelection(
            source=text("source"),
            event_type=text("type"),
            since=as_float(form.get("since")),
            until=as_float(form.get("until")),
            state=str(form.get("state", "dead")),
            destination=text("destination"),
            key=text("key"),
            text=text("q"),
        )
    if form.get("matching"):  # "Replay all N matching": the list's own filter
        return ReplaySelection(
            destination=text("destination"),
            source=text("source"),
            event_type=text("type"),
            error=text("error"),
            died_since=as_float(form.get("died_since")),
            died_until=as_float(form.get("died_until")),
            died_before=as_float(form.get("died_before")),
            key=text("key"),
            text=text("q"),
        )
    destination = text("destination")
    if destination is None:  # a dead-letter group's "Replay these" names its destination
        return None
    return ReplaySelection(
        destination=destination,
        error=text("error"),
        exact_error=True,
        died_before=as_float(form.get("died_before")),
    )
