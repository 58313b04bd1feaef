"""Each operator command, called as ``main(argv)`` in this process beside a real relay (its
aiohttp app on a real SQLite file): output, --json, exit codes. The command runs in a
thread, since the ones that change something call the relay's admin API, which this same
event loop serves. (tests/test_operator.py keeps what needs processes: a backup of a relay
under load, and the installed `relay` entry point.)"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from relay.app import Relay
from relay.cli import main
from tests.helpers import Receiver, post, query, running, settings_for, wait_for


@dataclass
class Operated:
    relay: Relay
    db: Path
    config: Path
    capsys: pytest.CaptureFixture[str]

    async def run(self, *argv: str, config: bool = True) -> tuple[int, str, str]:
        """``relay ARGV --config …``: (exit code, stdout, stderr)."""
        self.capsys.readouterr()
        args = [*argv, "--config", str(self.config)] if config else list(argv)
        code = await asyncio.to_thread(main, args)
        out, err = self.capsys.readouterr()
        return code, out, err

    def dead(self) -> int:
        return int(query(self.db, "SELECT COUNT(*) FROM v_dead WHERE replayed = 0")[0][0])


@pytest.fixture
async def operated(
    tmp_path: Path,
    receiver: Receiver,
    client: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> AsyncIterator[Operated]:
    """A relay with three events whose deliveries died (the receiver answers 422), and a
    config file the CLI reads: the database and the admin API on a Unix socket."""
    receiver.default = 422
    db, socket = tmp_path / "relay.db", tmp_path / "admin.sock"
    token = "cli-token"
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[storage]\npath = "{db}"\n[admin]\nlisten = "unix:{socket}"\ntoken = "{token}"\n'
    )
    settings = settings_for(
        db,
        receiver.url,
        admin={"listen": f"unix:{socket}", "token": token},
        retry={"max_attempts": 1},
    )
    async with running(settings) as relay:
        for i in range(3):
            status, _, _ = await post(
                client, relay.port, b'{"type": "invoice.paid"}', key=f"order-{i}"
            )
            assert status == 200
        operated = Operated(relay, db, config, capsys)
        await wait_for(lambda: operated.dead() == 3)
        yield operated


async def test_events_lists_newest_first_as_a_table_or_json(operated: Operated) -> None:
    code, out, _ = await operated.run("events", "--json")
    assert code == 0
    events = json.loads(out)
    assert [e["idempotency_key"] for e in events] == ["order-2", "order-1", "order-0"]
    assert all(e["deliveries"] == {"app": "dead"} for e in events)
    code, out, _ = await operated.run("events")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "RECEIVED", "(UTC)", "SOURCE", "TYPE", "DELIVERIES"]
    assert len(lines) == 4
    # Issue 20: in a pipe nothing is cut, so an id from the table works with `show`.
    assert [line.split()[0] for line in lines[1:]] == [e["id"] for e in events]
    code, out, _ = await operated.run("show", lines[1].split()[0])
    assert code == 0
    code, _, err = await operated.run("events", "--since", "soon")
    assert code == 2
    assert "not a time" in err


async def test_show_one_event(operated: Operated) -> None:
    _, out, _ = await operated.run("events", "--json")
    first = json.loads(out)[0]["id"]
    code, out, _ = await operated.run("show", first)
    assert code == 0
    assert "invoice.paid" in out
    assert "X-Signature: [redacted]" in out
    assert "delivery" in out
    code, out, _ = await operated.run("show", first, "--json")
    assert json.loads(out)["id"] == first
    code, _, err = await operated.run("show", "evt_nope")
    assert code == 4
    assert "no event evt_nope" in err


async def test_dead_and_stats(operated: Operated) -> None:
    code, out, _ = await operated.run("dead", "--json")
    assert (code, json.loads(out)["total"]) == (0, 3)
    code, out, _ = await operated.run("dead")
    assert out.strip().endswith("3 dead, not replayed")
    code, out, _ = await operated.run("stats", "--json")
    assert json.loads(out)["destinations"]["app"]["dead"] == 3
    code, out, _ = await operated.run("stats")
    assert all(len(line) <= 80 for line in out.splitlines())


async def test_replay_counts_first_refuses_to_guess_and_replays_once(
    operated: Operated,
) -> None:
    code, out, _ = await operated.run("replay", "--destination", "app", "--dry-run")
    assert code == 0
    assert out.startswith("3 deliveries of 3 events would be replayed; for example:")
    code, _, err = await operated.run("replay")
    assert code == 2  # nothing said: refuse, do not guess
    assert "say what to replay" in err
    code, out, _ = await operated.run("replay", "--destination", "app", "--json")
    assert (code, json.loads(out)["replayed"]) == (0, 3)
    await wait_for(lambda: operated.dead() == 3)  # the replays died too (422 again)
    code, out, _ = await operated.run("replay", "--destination", "app", "--json")
    assert json.loads(out)["replayed"] == 3  # the new dead ones; the first three not again


async def test_pause_and_resume(operated: Operated) -> None:
    code, out, _ = await operated.run("pause", "app")
    assert (code, out.strip()) == (0, "app: paused")
    assert operated.relay.scheduler.lane("app").paused is not None
    code, out, _ = await operated.run("resume", "app")
    assert (code, out.strip()) == (0, "app: resumed")
    code, _, err = await operated.run("pause", "nope")
    assert code == 4
    assert "no destination 'nope'" in err


async def test_reload_and_prune_through_the_admin_api(operated: Operated) -> None:
    code, _, err = await operated.run("reload")
    assert code == 1  # started from settings, not a file: the running relay says why
    assert "keeps its old config" in err
    code, out, _ = await operated.run("prune")
    assert (code, out.strip()) == (0, "retention is not configured")


async def test_tail_follows_new_events(operated: Operated, client: aiohttp.ClientSession) -> None:
    argv = ["tail", "--count", "1", "--timeout", "10", "--json", "--interval", "0.05"]
    operated.capsys.readouterr()
    follower = asyncio.create_task(
        asyncio.to_thread(main, [*argv, "--config", str(operated.config)])
    )
    seen = ""

    def following() -> bool:
        nonlocal seen
        seen += operated.capsys.readouterr().err
        return "following new events" in seen

    await wait_for(following)  # it has read where the events end: post now
    status, _, _ = await post(client, operated.relay.port, b"{}", key="tailed")
    assert status == 200
    assert await follower == 0
    out = operated.capsys.readouterr().out
    assert json.loads(out)["idempotency_key"] == "tailed"


async def test_backup_makes_a_copy_and_never_overwrites(operated: Operated) -> None:
    target = operated.db.with_name("copy.db")
    code, out, _ = await operated.run("backup", str(target), "--json")
    assert code == 0
    assert json.loads(out)["bytes"] == target.stat().st_size
    assert query(target, "SELECT COUNT(*) FROM events") == [(3,)]
    code, _, err = await operated.run("backup", str(target))
    assert code == 1
    assert "already exists" in err


async def test_changes_say_when_relay_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[storage]\npath = "{tmp_path}/relay.db"\n'
        f'[admin]\nlisten = "unix:{tmp_path}/none.sock"\ntoken = "t"\n'
    )
    for argv in (["pause", "app"], ["replay", "--all"], ["reload"]):
        code = await asyncio.to_thread(main, [*argv, "--config", str(config)])
        assert code == 3, argv
        assert "relay is not running" in capsys.readouterr().err
    code = await asyncio.to_thread(main, ["events", "--config", str(config)])
    assert code == 1  # no database there: said, with where it looked
    assert "no database here" in capsys.readouterr().err


def test_a_table_fits_the_width_it_is_given_and_cuts_nothing_without_one() -> None:
    from relay.cli.output import table

    rows = [("evt_01KB9ZQ6G7H8J9K0M1N2P3Q4R5", "connection refused " * 5)]
    wide = table(rows, ("ID", "ERROR"), width=None).splitlines()
    assert rows[0][0] in wide[1]
    assert wide[1].rstrip().endswith("refused")
    narrow = table(rows, ("ID", "ERROR"), width=60).splitlines()
    assert all(len(line) <= 60 for line in narrow)
    assert "…" in narrow[1]


async def test_show_takes_the_start_of_an_id(operated: Operated) -> None:
    code, out, _ = await operated.run("events", "--json")
    ids = [e["id"] for e in json.loads(out)]
    unique = next(
        i[:n] for n in range(4, 31) for i in ids if sum(o.startswith(i[:n]) for o in ids) == 1
    )
    code, out, _ = await operated.run("show", unique)
    assert code == 0
    assert out.startswith("event     " + next(i for i in ids if i.startswith(unique)))
    code, out, _ = await operated.run("show", unique + "…")  # as a cut table shows it
    assert code == 0
    code, _, err = await operated.run("show", "evt_")  # every event starts so
    assert code == 4
    assert "more than one event" in err
    code, _, err = await operated.run("show", "evt_ZZZZ")
    assert (code, err.strip()) == (4, "relay: no event evt_ZZZZ")


async def test_lists_take_until_and_csv(operated: Operated) -> None:
    code, out, _ = await operated.run("events", "--csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["ID", "RECEIVED (UTC)", "SOURCE", "TYPE", "DELIVERIES"]
    assert len(rows) == 4
    code, out, _ = await operated.run("dead", "--csv", "--until", "1h")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["DELIVERY", "EVENT", "DESTINATION", "DIED (UTC)", "LAST ERROR"]
    ]  # all three died just now, not an hour ago
    code, out, _ = await operated.run("dead", "--csv", "--since", "1h")
    assert len(list(csv.reader(io.StringIO(out)))) == 4
    code, out, _ = await operated.run("audit", "--csv", "--until", "1h")
    assert code == 0
    assert next(csv.reader(io.StringIO(out))) == [
        "WHEN (UTC)",
        "ACTOR",
        "ACTION",
        "TARGET",
        "RESULT",
    ]


def test_stats_lists_every_configured_destination_even_without_traffic(tmp_path: Path) -> None:
    """Issue 29: the example's paused `crm` never appeared in `relay stats`, although the
    docs promise "paused now"."""
    from tests.process import RelayProcess, run_cli, write_config

    extra = '[[destinations]]\nname = "crm"\nurl = "http://127.0.0.1:9/"\npaused = true\n'
    config = write_config(
        tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/", extra=extra
    )
    relay = RelayProcess(config).start()
    try:
        result = run_cli("stats", "--json", "--config", str(config))
        assert result.returncode == 0, result.stderr
        stats = json.loads(result.stdout)
        assert stats["destinations"]["crm"]["paused"] is True
        assert stats["destinations"]["app"]["paused"] is False
        assert set(stats["sources"]) == {"demo"}
        table = run_cli("stats", "--config", str(config)).stdout
        assert any(
            line.startswith("crm") and line.rstrip().endswith("yes") for line in table.splitlines()
        ), table
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
