"""Start-to-ready time and idle RSS of a relay executable (median of several starts).

Start to ready: from exec until GET /readyz answers 200 (database open and migrated,
listener bound). RSS: the whole process tree (a onefile binary is two processes), measured
after 3 s idle. Only 127.0.0.1.

Usage: python bench/startup.py [EXECUTABLE ...]   (default: dist/relay)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PORT = 18300


def tree_rss_mb(pid: int) -> float:
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def one_start(executable: str, directory: Path) -> tuple[float, float]:
    config = directory / "relay.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{PORT}"
[storage]
path = "{directory}/relay.db"
[[sources]]
name = "demo"
verify = "hmac"
secret = "s"
[[destinations]]
name = "app"
url = "http://127.0.0.1:9/"
[[routes]]
source = "demo"
destinations = ["app"]
""")
    started = time.monotonic()
    proc = subprocess.Popen(
        [executable, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not ready(PORT):
            if time.monotonic() - started > 30 or proc.poll() is not None:
                raise RuntimeError(f"{executable} did not become ready")
            time.sleep(0.005)
        elapsed = time.monotonic() - started
        time.sleep(3)
        return elapsed, tree_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    executables = sys.argv[1:] or ["dist/relay"]
    for executable in executables:
        starts, rss = [], []
        for _ in range(5):
            with tempfile.TemporaryDirectory() as tmp:
                elapsed, memory = one_start(executable, Path(tmp))
            starts.append(elapsed)
            rss.append(memory)
        size = Path(executable).stat().st_size / 1e6
        print(
            f"{executable}: file {size:.1f} MB, start-to-ready median "
            f"{statistics.median(starts):.2f} s (min {min(starts):.2f}, max {max(starts):.2f}), "
            f"idle RSS median {statistics.median(rss):.1f} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
