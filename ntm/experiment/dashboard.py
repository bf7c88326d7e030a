"""What reaches Weights & Biases beyond Lightning's scalars, laid out so that the project page
compares models with no set-up: offline without credentials, every training metric against
sequences seen, the evaluation grids as native charts, and the comparison run of `compare.py`.

Runs are grouped by task and model (configs/logger/wandb.yaml), so the default workspace draws
one line per model, the mean of its seeds. Training's functions act on the run they are given,
which only global rank 0 has.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import Logger, WandbLogger

from ntm.experiment import plots
from ntm.experiment.results import (
    BIT_ERRORS,
    SEQUENCES,
    EvaluationResults,
    Grid,
    RunSummary,
)

if TYPE_CHECKING:
    from ntm.experiment.compare import TaskComparison

#: The W&B project of training runs and comparisons (configs/logger/wandb.yaml says the same).
PROJECT = os.environ.get("WANDB_PROJECT", "ntm")
#: RunSummary fields copied into the W&B run summary, so the runs table can sort and group by them.
SUMMARY_FIELDS = ("solved", "solved_at", "parameters", "steps", "sequences_seen", "wall_time_s")


def use_wandb_offline_without_credentials() -> str:
    """Make W&B run offline (no prompt; `wandb sync` uploads later) unless WANDB_MODE is set or
    credentials exist (WANDB_API_KEY, or `wandb login`'s entry in ~/.netrc). Returns the mode
    in force."""
    if "WANDB_MODE" in os.environ:
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            has_key = netrc.netrc().authenticators("api.wandb.ai") is not None
        except (FileNotFoundError, netrc.NetrcParseError):
            has_key = False
    if not has_key:
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")


def wandb_run(loggers: Sequence[Logger]) -> Any | None:
    """The W&B run of the first `WandbLogger` in `loggers`, or None. Call on global rank 0 only
    (elsewhere Lightning hands out a dummy)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            return logger.experiment
    return None


def where(run: Any | None) -> str:
    """Where a run's W&B data goes, in a few words, e.g. for the start-up line."""
    if run is None:
        return "W&B: off"
    if run.disabled:
        return "W&B: disabled (WANDB_MODE=disabled)"
    if run.offline:
        return f"W&B: offline, upload with: wandb sync {run.settings.sync_dir}"
    return f"W&B: {run.url}"


def plot_against_sequences(run: Any) -> None:
    """Make sequences seen (the paper's x-axis) the default x-axis of every metric. Lightning
    defined "*" against its global step when it created the run; W&B merges a later definition
    of the same glob into it."""
    run.define_metric(SEQUENCES)
    run.define_metric("*", step_metric=SEQUENCES, step_sync=True)


def log_summary(run: Any, summary: RunSummary) -> None:
    """How training went, as run summary values (columns of the runs table)."""
    run.summary.update({name: getattr(summary, name) for name in SUMMARY_FIELDS})


def log_evaluation(run: Any, results: EvaluationResults, figures: dict[str, Path]) -> None:
    """The evaluation grids as native W&B charts.

    Each curve is also a metric against its own x-axis (``generalisation/bit_errors`` against
    ``generalisation/length``), so the workspace overlays the models' groups in one panel; each
    grid is one line-series chart of this run (``evaluation/capacity``: a line per memory
    size), a table of its rows, and the matplotlib figure.
    """
    import wandb

    grids = {"generalisation": results.generalisation, "capacity": results.capacity}
    for name, grid in grids.items():
        if grid is None:
            continue
        series = plots.grid_series(grid.rows, grid.parameter)
        _log_curves(run, name, grid, series)
        # scalar columns only: the diagnostics (per position, per repetition) are lists and dicts
        columns = [c for c, v in grid.rows[0].items() if not isinstance(v, list | dict)]
        run.log(
            {
                f"evaluation/{name}": wandb.plot.line_series(
                    xs=[x for x, *_ in series.values()],
                    ys=[y for _, y, *_ in series.values()],
                    keys=list(series),
                    title=f"{results.task}, {results.model}: {name} (bit errors per sequence)",
                    xname=grid.parameter,
                ),
                f"evaluation/{name}_table": wandb.Table(
                    columns=columns, data=[[row[c] for c in columns] for row in grid.rows]
                ),
            }
        )
        run.summary.update(
            {
                f"{name}/longest_solved/{slots}": value
                for slots, value in grid.longest_solved.items()
            }
        )
    images = {f"evaluation/{name}_figure": wandb.Image(str(path)) for name, path in figures.items()}
    if images:
        run.log(images)


def _log_curves(run: Any, name: str, grid: Grid, series: dict[str, tuple]) -> None:
    """One metric per curve (``capacity/bit_errors/32_slots``) against its own x-axis metric
    (``capacity/length``), logged one grid value per row."""
    x_axis = f"{name}/{grid.parameter}"
    run.define_metric(x_axis, hidden=True)  # an axis, not a curve of its own
    rows: dict[int, dict[str, float]] = {}
    for label, (xs, ys, *_) in series.items():
        key = f"{name}/{BIT_ERRORS}" if len(series) == 1 else f"{name}/{BIT_ERRORS}/{_key(label)}"
        run.define_metric(key, step_metric=x_axis)
        for x, y in zip(xs, ys, strict=True):
            rows.setdefault(x, {})[key] = y
    for x in sorted(rows):
        run.log({x_axis: x, **rows[x]})


def _key(label: str) -> str:
    """ "repeats 10, 32 slots" -> "repeats_10/32_slots"."""
    return label.replace(", ", "/").replace(" ", "_")


def log_comparison(
    comparisons: Sequence[TaskComparison], figures: dict[str, Path], *, folder: Path, sources
) -> str:
    """A W&B run of its own (job type "comparison") whose charts overlay the models: per task,
    bit errors over the generalisation grid and the longest length solved per memory size
    (medians over seeds), the comparison table and figure. Returns `where` it went."""
    import wandb

    use_wandb_offline_without_credentials()
    run = wandb.init(
        project=PROJECT,
        job_type="comparison",
        group="comparison",
        name="comparison: " + ", ".join(c.task for c in comparisons),
        dir=str(folder),
        config={"sources": [str(s) for s in sources], "tasks": [c.task for c in comparisons]},
        settings={"silent": True},
    )
    try:
        logged: dict[str, Any] = {}
        for task in comparisons:
            for name, curves, xname, what in (
                ("generalisation", task.curves, task.parameter, "bit errors per sequence"),
                ("capacity", task.capacity, "memory slots", f"longest {task.parameter} solved"),
            ):
                if curves:
                    logged[f"{task.task}/{name}"] = wandb.plot.line_series(
                        xs=[x for x, *_ in curves.values()],
                        ys=[median for _, median, *_ in curves.values()],
                        keys=list(curves),
                        title=f"{task.task}: {what} (median over seeds)",
                        xname=xname,
                    )
            logged[f"{task.task}/table"] = wandb.Table(columns=task.header, data=task.rows)
            if task.task in figures:
                logged[f"{task.task}/figure"] = wandb.Image(str(figures[task.task]))
        run.log(logged)
        return where(run)
    finally:
        run.finish()
