"""Durable ingest over HTTPS against plain HTTP, the same relay config, in the same run.

Four setups, interleaved over ``--runs`` rounds: HTTP and HTTPS ([server.tls] with a P-256
certificate from files), each with keep-alive (wrk's default: one TLS handshake per
connection, then requests) and without (``Connection: close``: a TCP connection, and with
TLS a full handshake, per request). wrk -t1 -c50 on core 1, relay on core 0, the 1.5 KB
Stripe-like signed body, events stored (no route, so no deliveries). Only 127.0.0.1.

Usage: python bench/https.py [--runs 3] [--seconds 8]
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
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from ingest import PORT, SECRET, machine, pinned, process, stripe_like_body, wrk_script  # noqa: E402

from tests.certs import make_ca, make_leaf  # noqa: E402

SETUPS = ["http-keepalive", "https-keepalive", "http-close", "https-close"]


def config(directory: Path, tls: bool) -> Path:
    section = ""
    if tls:
        ca = make_ca(directory, "bench CA")
        cert, key = make_leaf(directory, ["127.0.0.1"], ca, "bench")
        section = f'[server.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    path = directory / "relay.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{PORT}"
max_connections_per_address = 1000  # wrk is one address
{section}
[storage]
path = "{directory}/relay.db"
[log]
level = "warning"
[[sources]]
name = "bench"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
event_type = "json:/type"
"""
    )
    return path


def run(setup: str, script: Path, seconds: float) -> dict[str, float]:
    tls = setup.startswith("https")
    close = setup.endswith("close")
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        directory = Path(tmp)
        conf = config(directory, tls)
        argv = [sys.executable, "-m", "relay", "serve", "--config", str(conf)]
        with process(pinned(0, argv), PORT, directory / "relay.log"):
            url = f"{'https' if tls else 'http'}://127.0.0.1:{PORT}/in/bench"
            extra = ["-H", "Connection: close"] if close else []
            wrk = ["wrk", "-t1", "-c50", f"-d{seconds:g}s", "-s", str(script), *extra, url]
            subprocess.run(pinned(1, [*wrk[:3], "-d1s", *wrk[4:]]), capture_output=True, check=True)
            out = subprocess.run(pinned(1, wrk), capture_output=True, text=True, check=True).stdout
        rps = float(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("Requests/sec")))
        errors = [ln for ln in out.splitlines() if "Non-2xx" in ln or "Socket errors" in ln]
        with contextlib.closing(sqlite3.connect(directory / "relay.db")) as db:
            stored = db.execute("SELECT count(*) FROM events").fetchone()[0]
    return {"rps": rps, "stored": stored, "errors": len(errors)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    script = wrk_script(stripe_like_body(), Path(tempfile.mkdtemp()) / "post.lua")
    found: dict[str, list[float]] = {s: [] for s in SETUPS}
    for n in range(args.runs):
        for setup in SETUPS:  # interleaved: the machine's drift hits every setup
            result = run(setup, script, args.seconds)
            found[setup].append(result["rps"])
            print(
                f"run {n + 1} {setup}: {result['rps']:,.0f} req/s, {result['stored']} stored,"
                f" error lines {result['errors']}",
                file=sys.stderr,
                flush=True,
            )
    med = {s: statistics.median(v) for s, v in found.items()}
    lines = [
        "| setup | req/s median (min – max) | HTTPS / HTTP |",
        "|---|---:|---:|",
    ]
    for setup in SETUPS:
        values = found[setup]
        plain = med[setup.replace("https", "http")]
        ratio = f"{med[setup] / plain:.2f}x" if setup.startswith("https") else "1.00x"
        lines.append(
            f"| {setup} | {med[setup]:,.0f} ({min(values):,.0f} – {max(values):,.0f}) | {ratio} |"
        )
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}\n"
        f"python bench/https.py --runs {args.runs} --seconds {args.seconds:g}\n\n"
        + "\n".join(lines)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
