"""Turn sweeps into a comparison: a markdown table and figures, per task and model.

    python train.py -m controller=lstm,mlp,transformer seed=0,1,2
    python train.py -m model=lstm_baseline seed=0,1,2
    python compare.py multirun/<date> [more folders ...] [--out comparison/] [--wandb]
    python compare.py multirun/search --by optimizer.lr     # a search: a row per value

Reads every run folder below the given folders (summary.json and, after evaluation,
results.json) and writes <out>/comparison.md, <out>/generalisation_<task>.png and, for runs
logged with `logger=csv`, <out>/learning_<task>.png (validation bit errors against sequences
seen, one line per run): medians and
spread over seeds of sequences needed to solve the training distribution, bit errors at the
generalisation grid points (1x, 2x, 3x, 6x the training length where the grid has them),
longest length solved per memory size, parameter counts and training throughput; and for
students trained from a teacher (README "Conversion") a table of teacher and student bit errors
and their agreement at 1x, 2x, 3x, ... the training range. With --wandb, also a W&B run (job
type "comparison") whose charts overlay the models.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ntm.experiment import plots
from ntm.experiment.compare import compare, conversion_tables, load_runs
from ntm.experiment.results import ResultsFormatError


def folder_problem(folder: Path) -> str:
    """Why `folder` cannot be searched for runs ('' if it can)."""
    if not folder.exists():
        return "no such folder"
    if not folder.is_dir():
        return "not a folder"
    if not os.access(folder, os.R_OK | os.X_OK):
        return "cannot read it (permission denied)"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="multirun or outputs folders")
    parser.add_argument("--out", type=Path, default=None, help="default: the first folder")
    parser.add_argument("--wandb", action="store_true", help="also log a W&B comparison run")
    parser.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="KEY",
        help="a config key that tells runs of one model apart, e.g. optimizer.lr (a search); "
        "repeat it for several; KEY=VALUE gives runs whose config lacks the key that value",
    )
    args = parser.parse_args(argv)
    for folder in args.folders:
        problem = folder_problem(folder)
        if problem:
            print(f"error: {folder}: {problem}", file=sys.stderr)
            return 2
    try:
        runs = load_runs(args.folders)
        tasks = compare(runs, by=args.by)
    except ResultsFormatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not runs:
        print(f"error: no run folders (summary.json) under {args.folders}", file=sys.stderr)
        return 2
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    markdown = "\n".join([t.markdown for t in tasks] + [conversion_tables(runs)])
    (out / "comparison.md").write_text(markdown)
    print(markdown)
    figures, learning_figures = {}, 0
    for task in tasks:
        if task.curves:
            figure = plots.plot_curves(
                task.curves,
                xlabel=task.parameter,
                vline=task.trained_max,
                title=f"{task.task}: generalisation (median, min–max over seeds)",
            )
            figures[task.task] = out / f"generalisation_{task.task}.png"
            plots.save(figure, figures[task.task])
        if task.learning:
            figure = plots.plot_learning_curves(
                task.learning,
                solved_below=task.solved_below,
                title=f"{task.task}: learning curves (runs logged with logger=csv)",
            )
            plots.save(figure, out / f"learning_{task.task}.png")
            learning_figures += 1
    if args.wandb:
        from ntm.experiment.dashboard import log_comparison

        print(log_comparison(tasks, figures, folder=out, sources=args.folders))
    print(f"wrote {out / 'comparison.md'} and {len(figures) + learning_figures} figure(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
