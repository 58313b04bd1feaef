"""The arm64 executable (`make binary-arm64`), run under qemu user emulation: the same smoke
test as the x86_64 one (a signed event received, committed, delivered; SIGTERM exits 0).

Skipped unless dist/relay-linux-arm64 and its Debian arm64 tree (.cache/arm64/rootfs, for
the dynamic loader and libc) exist; `make test-arm64` builds both and runs this.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Receiver

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "dist" / "relay-linux-arm64"
TREE = ROOT / ".cache" / "arm64" / "rootfs"
QEMU = shutil.which("qemu-aarch64-static")

# make test-arm64 (and make test-release) build what this tests; make test leaves it out.
pytestmark = pytest.mark.release


@pytest.fixture(autouse=True)
def arm64_built() -> None:
    if not (BINARY.exists() and TREE.is_dir() and QEMU):
        pytest.fail("no arm64 build: run make test-arm64 (as root) to build and test it")


def under_qemu(*args: str) -> list[str]:
    assert QEMU is not None
    return [QEMU, str(BINARY), *args]


# The one-file executable starts itself again (the bootloader, then Python): that second
# start goes through binfmt_misc, so qemu finds the arm64 loader and libc through the
# environment rather than through -L.
ENV = {**os.environ, "QEMU_LD_PREFIX": str(TREE)}


def test_it_is_an_aarch64_executable() -> None:
    header = BINARY.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == 183  # e_machine: EM_AARCH64
    out = subprocess.run(
        under_qemu("version"), capture_output=True, text=True, timeout=120, env=ENV
    )
    assert out.returncode == 0, out.stderr
    assert "aarch64" in out.stdout, out.stdout
    assert "C parser" in out.stdout, out.stdout


@pytest.mark.timeout(300)
async def test_arm64_round_trip_and_clean_stop(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    from tests.test_binary import smoke

    assert QEMU is not None
    await smoke([QEMU, str(BINARY)], tmp_path, receiver, client, env=ENV, patience=6.0)
