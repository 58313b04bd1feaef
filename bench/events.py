"""Ingest with splitting and normalization against the plain path, in the same run.

The same SendGrid Event Webhook bodies (arrays of events shaped as in SendGrid's docs,
each with its own sg_event_id and message, so nothing is a duplicate) are posted to:

- ``plain``: a source without a mapping: the request is one event;
- ``normalized``: ``normalize = "sendgrid"``: one event per item (plus the request, kept
  once), each with the canonical columns, and each message's status decided in the ingest
  transaction.

With 50 items per request (``batch50``) and with 1 (``single``). Events per second count
item events for ``normalized`` (a 50-item batch is 50 events) and stored events for
``plain``. Both sources use ``verify = "none"`` (the bodies change per request and wrk
cannot sign them; signature cost is per request and measured in bench/ingest.py), no route,
durability full. wrk -t1 -c50 on core 1, relay on core 0; setups interleaved.

Usage: python bench/events.py [--runs 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ingest import PORT, machine, pinned, process  # noqa: E402

SETUPS = ["batch50-plain", "batch50-normalized", "single-plain", "single-normalized"]

# One SendGrid event (twilio.com/docs/sendgrid/for-developers/tracking-events/event); %d:
# the request's number, then the item's. Lua's string.format fills them in.
ITEM = (
    '{"email":"user%d_%d@example.com","timestamp":1764424800,'
    '"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"delivered",'
    '"response":"250 OK","sg_event_id":"ev-%d-%d",'
    '"sg_message_id":"msg-%d-%d.filter0001.16648.5515E0B88.0","category":["invoice"],'
    '"order_id":"A-1001"}'
)


def script(items: int, path: Path) -> Path:
    path.write_text(
        f"""
local n = 0
local item = '{ITEM}'
request = function()
  n = n + 1
  local parts = {{}}
  for i = 1, {items} do
    parts[i] = string.format(item, n, i, n, i, n, i)
  end
  local body = "[" .. table.concat(parts, ",") .. "]\\r\\n"
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, body)
end
"""
    )
    return path


def config(directory: Path, normalized: bool) -> Path:
    path = directory / "relay.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{PORT}"
max_connections_per_address = 1000  # wrk is one address
[storage]
path = "{directory}/relay.db"
[log]
level = "warning"
[[sources]]
name = "bench"
verify = "none"
{'normalize = "sendgrid"' if normalized else ""}
"""
    )
    return path


def run(setup: str, scripts: dict[int, Path], seconds: float) -> dict[str, float]:
    items = 50 if setup.startswith("batch50") else 1
    normalized = setup.endswith("normalized")
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        directory = Path(tmp)
        conf = config(directory, normalized)
        argv = [sys.executable, "-m", "relay", "serve", "--config", str(conf)]
        with process(pinned(0, argv), PORT, directory / "relay.log"):
            url = f"http://127.0.0.1:{PORT}/in/bench"
            wrk = ["wrk", "-t1", "-c50", f"-d{seconds:g}s", "-s", str(scripts[items]), url]
            out = subprocess.run(pinned(1, wrk), capture_output=True, text=True, check=True).stdout
        rps = float(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("Requests/sec")))
        errors = [ln for ln in out.splitlines() if "Non-2xx" in ln or "Socket errors" in ln]
        with contextlib.closing(sqlite3.connect(directory / "relay.db")) as db:
            if normalized:
                events = db.execute("SELECT count(*) FROM events WHERE parent_id IS NOT NULL")
            else:
                events = db.execute("SELECT count(*) FROM events")
            stored = events.fetchone()[0]
    return {
        "rps": rps,
        "events_per_s": rps * (items if normalized else 1),
        "stored": stored,
        "errors": len(errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    scripts = {n: script(n, folder / f"post{n}.lua") for n in (1, 50)}
    rps: dict[str, list[float]] = {s: [] for s in SETUPS}
    eps: dict[str, list[float]] = {s: [] for s in SETUPS}
    for n in range(args.runs):
        for setup in SETUPS:  # interleaved: the machine's drift hits every setup
            result = run(setup, scripts, args.seconds)
            rps[setup].append(result["rps"])
            eps[setup].append(result["events_per_s"])
            print(
                f"run {n + 1} {setup}: {result['rps']:,.0f} req/s, "
                f"{result['events_per_s']:,.0f} events/s, {result['stored']} stored, "
                f"error lines {result['errors']}",
                file=sys.stderr,
                flush=True,
            )
    med_r = {s: statistics.median(v) for s, v in rps.items()}
    med_e = {s: statistics.median(v) for s, v in eps.items()}
    lines = [
        "| setup | req/s median (min – max) | vs plain | events/s median | vs plain |",
        "|---|---:|---:|---:|---:|",
    ]
    for setup in SETUPS:
        plain = setup.replace("normalized", "plain")
        lines.append(
            f"| {setup} | {med_r[setup]:,.0f} ({min(rps[setup]):,.0f} – {max(rps[setup]):,.0f})"
            f" | {med_r[setup] / med_r[plain]:.2f}x | {med_e[setup]:,.0f}"
            f" | {med_e[setup] / med_e[plain]:.2f}x |"
        )
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}\n"
        f"python bench/events.py --runs {args.runs} --seconds {args.seconds:g}\n\n"
        + "\n".join(lines)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
