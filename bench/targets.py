"""The performance issue's targets over several runs of ``make bench``, as one table.

Each run of bench/suite.py keeps its raw numbers in bench/results/suite-*.json; this reads
the ones named (by default the newest three) and prints a row per target, a column per run.

Usage: python bench/targets.py [bench/results/suite-….json …]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import targets  # noqa: E402


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((HERE / "results").glob("suite-*.json"))[-3:]
    if not paths:
        print("no bench/results/suite-*.json yet: run make bench", file=sys.stderr)
        return 1
    runs = [targets(json.loads(p.read_text())) for p in paths]
    stamps = [p.stem.removeprefix("suite-") for p in paths]
    print("| target | goal | " + " | ".join(stamps) + " | |")
    print("|---|---|" + "---|" * len(paths) + "---|")
    for i, (name, goal, _, _) in enumerate(runs[0]):
        met = sum(1 for run in runs if run[i][3])
        verdict = "met" if met == len(runs) else f"met in {met} of {len(runs)}"
        cells = " | ".join(run[i][2] for run in runs)
        print(f"| {name} | {goal} | {cells} | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
