"""`make run` from a fresh clone to the first accepted (and delivered) event.

Clones this repository's HEAD into a temporary folder, runs `make run` there, and posts
the README's signed example event to 127.0.0.1:8080 until relay accepts it; then waits for
the demo receiver to print the delivery, and lists what the venv holds (no test or
development tool may be in it). ``--cold`` gives uv an empty cache, as on a fresh machine
(everything downloaded from PyPI); otherwise uv's usual cache serves the wheels.

Usage: python bench/makerun.py [--runs 3] [--cold]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_ONLY = (
    "mypy",
    "pytest",
    "playwright",
    "stripe",
    "twilio",
    "slack_sdk",
    "svix",
    "ruff",
    "hypothesis",
    "standardwebhooks",
    "psycopg",
    "jsonschema",
    "PyInstaller",
)


@dataclass
class Result:
    accepted: float  # seconds from `make run` to the first 200
    delivered: float  # to the demo receiver printing the delivery
    packages: list[str]  # what the venv's site-packages holds
    test_only: list[str]  # of those, test or development tools
    event_id: str  # what relay answered for the example event
    printed: str  # the demo receiver's line for its delivery
    told: str  # where make run said to POST


def post(body: bytes, port: int) -> tuple[int, dict[str, object]]:
    signature = "sha256=" + hmac.new(b"demo-secret-change-me", body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/in/demo",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Signature": signature,
            "X-Request-Id": "order-1",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - http only
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except OSError:
        return 0, {}


def once(
    cold: bool,
    timeout: float = 600.0,
    ports: tuple[int, int, int] | None = None,
    repo: Path = ROOT,
) -> Result:
    """`make run` in a fresh clone of ``repo``; ``ports`` (relay, admin, receiver) in place
    of the example's 8080, 8081 and 9000, so a test need not find those free."""
    with tempfile.TemporaryDirectory(prefix="relay-makerun-") as tmp:
        clone = Path(tmp) / "relay"
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        env = dict(os.environ)
        if cold:
            env["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")
        argv, port = ["make", "run"], 8080
        if ports is not None:
            port, admin, sink = ports
            text = (clone / "config.example.toml").read_text()
            for old, new in (("8080", port), ("8081", admin), ("9000", sink)):
                text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
            (clone / "run.toml").write_text(text)
            argv += ["RUN_CONFIG=run.toml", f"SINK_LISTEN=127.0.0.1:{sink}"]
        log = Path(tmp) / "make-run.log"
        started = time.monotonic()
        with log.open("w") as out:
            make = subprocess.Popen(
                argv,
                cwd=clone,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            body = json.dumps({"id": "evt_1", "type": "invoice.paid", "amount": 4200}).encode()
            deadline = started + timeout
            while (answer := post(body, port))[0] != 200:
                if make.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"make run did not accept an event:\n{log.read_text()}")
                time.sleep(0.1)
            accepted = time.monotonic() - started
            while not (printed := _delivery_line(log.read_text())):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no delivery printed:\n{log.read_text()}")
                time.sleep(0.05)
            delivered = time.monotonic() - started
        finally:
            os.killpg(make.pid, signal.SIGINT)
            try:
                make.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait()
        site = next((clone / ".venv" / "lib").glob("python3*/site-packages"))
        packages = sorted(p.name for p in site.iterdir() if not p.name.startswith(("_", ".")))
        lowered = {p.lower() for p in packages}
        test_only = [t for t in TEST_ONLY if t.lower() in lowered]
        event_id = str(answer[1].get("id", ""))
        said = re.search(r"relay: POST to (\S+)", log.read_text())
        told = said.group(1) if said else ""
        return Result(accepted, delivered, packages, test_only, event_id, printed, told)


def _delivery_line(log: str) -> str:
    return next((ln for ln in log.splitlines() if ln.startswith("sink: POST /hook")), "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="an empty uv cache")
    args = parser.parse_args()
    results = []
    for n in range(args.runs):
        result = once(args.cold)
        results.append(result)
        print(
            f"run {n + 1}: accepted after {result.accepted:.1f} s, delivered after "
            f"{result.delivered:.1f} s; test-only packages: {result.test_only or 'none'}",
            file=sys.stderr,
            flush=True,
        )
    accepted = [r.accepted for r in results]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; python bench/makerun.py "
        f"--runs {args.runs}{' --cold' if args.cold else ''}\n"
        f"first accepted event: median {statistics.median(accepted):.1f} s "
        f"(min {min(accepted):.1f}, max {max(accepted):.1f}); "
        f"{len(results[-1].packages)} entries in site-packages, test-only: "
        f"{results[-1].test_only or 'none'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
