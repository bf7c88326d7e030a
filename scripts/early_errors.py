"""Does a run's start predict its end? Each run's median training bit errors per sequence over
a window of training sequences, beside whether it solved within a cap, and how many runs
below and above a threshold solved. Repeat copy's curriculum trains copying first: a run
still making many errors there rarely solves later (README "Repeat copy: the end marker later").

    python scripts/early_errors.py multirun/rc_* --window 40000 64000 --below 5

Each run is a train.py folder with summary.json and a CSV log (`logger=csv`); folders that
hold runs (a sweep, `seed<k>` folders) are searched for them.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path


def runs_under(folders: list[Path]) -> list[Path]:
    """The run folders (those with summary.json) in or under `folders`, each once, sorted."""
    found = {summary.parent for folder in folders for summary in folder.rglob("summary.json")}
    return sorted(found)


def window_median(run: Path, first: int, last: int) -> float | None:
    """The median of the run's logged `train/bit_errors` at sequences in [first, last); None
    when it logged none there."""
    values = []
    for log in run.glob("csv/version_*/metrics.csv"):
        with log.open(newline="") as file:
            for row in csv.DictReader(file):
                errors, sequences = row.get("train/bit_errors"), row.get("sequences")
                if errors and sequences and first <= float(sequences) < last:
                    values.append(float(errors))
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument(
        "--window",
        nargs=2,
        type=int,
        default=[40000, 64000],
        metavar=("FIRST", "LAST"),
        help="training sequences [FIRST, LAST)",
    )
    parser.add_argument("--below", type=float, default=5.0, help="the threshold to split at")
    parser.add_argument("--cap", type=int, default=400000, help="solved within this many sequences")
    args = parser.parse_args(argv)
    first, last = args.window
    if not 0 <= first < last:
        parser.error(f"--window needs 0 <= FIRST < LAST, got {first} {last}")
    runs = runs_under(args.folders)
    if not runs:
        parser.error("no run folders (with summary.json) in " + " ".join(map(str, args.folders)))
    rows = []
    for run in runs:
        median = window_median(run, first, last)
        if median is None:
            print(f"{run}: no training errors logged in the window, left out", file=sys.stderr)
            continue
        solved_at = json.loads((run / "summary.json").read_text())["solved_at"]
        solved = solved_at is not None and solved_at <= args.cap
        rows.append((median, solved, solved_at, run))
    print(f"median training bit errors at sequences {first:,}-{last:,}; solved within {args.cap:,}")
    for median, solved, solved_at, run in sorted(rows, key=lambda row: row[0]):
        print(f"{median:8.2f}  {f'solved at {solved_at:,}' if solved else 'not solved':>20}  {run}")
    below = [row for row in rows if row[0] < args.below]
    above = [row for row in rows if row[0] >= args.below]
    for name, side in (("below", below), ("at or above", above)):
        print(f"{name} {args.below:g}: {sum(row[1] for row in side)} of {len(side)} solved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
