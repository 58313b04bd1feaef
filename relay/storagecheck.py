"""``relay check-storage``: what the storage under the database can do, in a few seconds.

A Raspberry Pi's SD card can take tens of milliseconds per fsync where an SSD takes a
fraction of one, and with ``durability = "full"`` every acknowledged event waits for one.
This measures, in a scratch folder beside the database (removed afterwards):

- raw fsyncs: 4 KiB appended and ``fsync``-ed, as many as fit in the time given;
- relay's own commit: a transaction that stores one event (a 1.5 KB body) and its
  delivery with relay's schema and statements, with ``synchronous = FULL`` and ``NORMAL``.

What it prints is what a user needs to judge a card or a USB SSD: fsyncs a second and the
commit latency (p50, p99) for both durabilities, the event rate that allows one sender at a
time, and whether ``normal`` is worth considering.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relay.records import NewEvent
from relay.store.sqlite.probe import CommitProbe

BODY = json.dumps({"type": "invoice.paid", "data": "x" * 1400}).encode()  # about 1.5 KB
SLOW_P99_MS = 20.0  # a commit slower than this at p99 is felt in every acknowledgement


@dataclass(frozen=True, slots=True)
class Timing:
    """Operations timed one after another."""

    samples: list[float]  # seconds each
    elapsed: float

    @property
    def per_second(self) -> float:
        return len(self.samples) / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        """In milliseconds (nearest rank)."""
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) * 1000


def _timed(step: Callable[[], None], seconds: float, at_least: int = 5) -> Timing:
    """Run ``step`` until ``seconds`` have passed (and at least ``at_least`` times)."""
    samples: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    while len(samples) < at_least or time.perf_counter() < deadline:
        began = time.perf_counter()
        step()
        samples.append(time.perf_counter() - began)
        if len(samples) >= 100_000:
            break
    return Timing(samples, time.perf_counter() - start)


def fsyncs(folder: Path, seconds: float) -> Timing:
    path = folder / "fsync.bin"
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0

    def step() -> None:
        nonlocal written
        if written >= 1 << 20:  # keep the file small: start over at 1 MiB
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            written = 0
        os.write(fd, block)
        written += len(block)
        os.fsync(fd)

    try:
        return _timed(step, seconds)
    finally:
        os.close(fd)


def commits(folder: Path, durability: str, seconds: float) -> Timing:
    """relay's ingest transaction: one event and its delivery, committed."""
    probe = CommitProbe(folder / f"commit-{durability}.db", durability)
    count = 0

    def step() -> None:
        nonlocal count
        count += 1
        now = time.time()
        event = NewEvent(
            id=f"evt_check{count:021d}",
            source="check",
            received_at=now,
            idempotency_key=f"k{count}",
            event_type="invoice.paid",
            content_type="application/json",
            remote_addr="127.0.0.1",
            headers='[["Content-Type", "application/json"]]',
            body=BODY,
            destinations=("app",),
        )
        probe.commit(event, now)

    try:
        return _timed(step, seconds)
    finally:
        probe.close()


@dataclass(frozen=True, slots=True)
class Report:
    folder: Path
    fsync: Timing
    full: Timing
    normal: Timing

    def lines(self) -> list[str]:
        def row(name: str, t: Timing) -> str:
            return (
                f"{name:<16}{t.per_second:>9,.0f}/s   p50 {t.p50:>7.2f} ms   "
                f"p99 {t.percentile(99):>7.2f} ms   ({len(t.samples)} in {t.elapsed:.1f} s)"
            )

        full_p99 = self.full.percentile(99)
        out = [
            f"storage under {self.folder}",
            row("fsync", self.fsync),
            row("commit (full)", self.full),
            row("commit (normal)", self.normal),
            "",
            f"durability = full: this storage takes about {self.full.per_second:,.0f} commits a "
            f"second, p99 {full_p99:.1f} ms each.",
            "A sender that waits for each answer gets at most that many events a second;",
            "concurrent senders share commits (group commit), so under load the CPU limits",
            "ingest before this storage does, as long as a commit is faster than a request.",
        ]
        gain = self.normal.per_second / self.full.per_second if self.full.per_second else 0.0
        if full_p99 > SLOW_P99_MS:
            out += [
                f"slow: p99 {full_p99:.0f} ms per commit. A USB SSD is the better fix; "
                f"durability = normal would",
                f"commit in p99 {self.normal.percentile(99):.1f} ms ({gain:.0f}x the rate), "
                "at the cost of losing the last acknowledged",
                "events on a power cut (not on a crash of relay): docs/deploy.md.",
            ]
        elif gain >= 3:
            out += [
                f"full is fine here; normal would be {gain:.0f}x faster per commit, worth it "
                "only for",
                "bursts of one-at-a-time senders, and only if losing the last events on a power "
                "cut is acceptable.",
            ]
        else:
            out.append("full costs little here: keep durability = full.")
        return out


def check(directory: Path, seconds: float = 2.0) -> Report:
    """Measure the storage of ``directory`` (it must exist and be writable): about
    ``3 * seconds`` in all, scratch files removed."""
    folder = Path(tempfile.mkdtemp(prefix=".relay-check-storage-", dir=directory))
    try:
        fsync = fsyncs(folder, seconds)
        full = commits(folder, "full", seconds)
        normal = commits(folder, "normal", seconds)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)
    return Report(directory, fsync, full, normal)
