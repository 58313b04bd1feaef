"""`relay check-storage`: measures the storage a database lives on, quickly, and tidies up."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.process import run_cli


def test_check_storage_prints_fsyncs_and_commit_latency_within_ten_seconds(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    result = run_cli("check-storage", str(tmp_path))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 10, f"took {elapsed:.1f}s"  # the bound for a Pi user's patience
    out = result.stdout
    for name in ("fsync", "commit (full)", "commit (normal)"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        rate, p50, p99 = re.search(
            r"([\d,]+)/s\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", line
        ).groups()  # type: ignore[union-attr]
        assert int(rate.replace(",", "")) > 0
        assert 0 < float(p50) <= float(p99)
    assert "durability = full" in out
    assert list(tmp_path.iterdir()) == []  # its scratch files are gone


def test_check_storage_takes_a_database_path_and_names_a_missing_folder(tmp_path: Path) -> None:
    ok = run_cli("check-storage", str(tmp_path / "relay.db"), "--seconds", "0.2")
    assert ok.returncode == 0, ok.stderr
    assert f"storage under {tmp_path}" in ok.stdout
    missing = run_cli("check-storage", str(tmp_path / "nope" / "relay.db"))
    assert missing.returncode == 1
    assert "no such folder" in missing.stderr
