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
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ntm

from ntm.experiment.compare import Run, learning_curve, load_runs  # noqa: E402
from ntm.experiment.results import BIT_ERRORS, train_key  # noqa: E402


def window_median(run: Run, first: int, last: int) -> float | None:
    """The median of the run's logged training bit errors at sequences in [first, last); None
    when it logged none there."""
    curve = learning_curve(run, train_key(BIT_ERRORS))
    values = [v for x, v in zip(*curve, strict=True) if first <= x < last] if curve else []
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
    runs = load_runs(args.folders)
    if not runs:
        parser.error("no run folders (with summary.json) in " + " ".join(map(str, args.folders)))
    rows = []
    for run in runs:
        median = window_median(run, first, last)
        if median is None:
            print(f"{run.folder}: no training errors in the window, left out", file=sys.stderr)
            continue
        solved_at = run.summary.solved_at
        solved = solved_at is not None and solved_at <= args.cap
        rows.append((median, solved, solved_at, run.folder))
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
