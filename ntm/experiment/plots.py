"""Figures: one sequence's input, target, output and head weightings over time (the paper's
figures 6, 9 and 12), and bit errors over a grid (generalisation, capacity, comparison).
Needs matplotlib (part of ``pip install torch-ntm[train]``)."""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

from torch import Tensor

from ntm.experiment.results import (
    AGREEMENT,
    BIT_ERRORS,
    EXACT_AGREEMENT,
    POSITION_ERRORS,
    ROW_MEASUREMENTS,
    SEGMENT_CHANNEL_ERRORS,
    SEGMENT_ERRORS,
    TEACHER_BIT_ERRORS,
    EvaluationResults,
    point_label,
)


def available() -> bool:
    """Whether figures can be drawn (matplotlib is installed)."""
    return importlib.util.find_spec("matplotlib") is not None


def warn_unavailable(what: str) -> None:
    warnings.warn(f"matplotlib is not installed: no {what} (pip install matplotlib)", stacklevel=3)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers and in CI
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("figures need matplotlib: pip install matplotlib") from error
    return plt


def plot_sequence(
    inputs: Tensor,
    targets: Tensor,
    outputs: Tensor,
    read_weights: Tensor | None = None,
    write_weights: Tensor | None = None,
    title: str = "",
):
    """One sequence: inputs (t, i), targets and outputs (t, o) as probabilities, and the first
    read and write head's weightings (t, h, n), each drawn with time along the x-axis.
    Returns a matplotlib Figure."""
    plt = _pyplot()
    panels = [("input", inputs), ("target", targets), ("output", outputs)]
    if write_weights is not None:
        panels.append(("write weighting (head 0)", write_weights[:, 0]))
    if read_weights is not None:
        panels.append(("read weighting (head 0)", read_weights[:, 0]))
    # Weightings get three times a data panel's height, whatever the number of slots, so a
    # 128-slot memory does not squash the data into slivers.
    data_height = max(p.shape[1] for _, p in panels[:3])
    heights = [p.shape[1] for _, p in panels[:3]] + [3 * data_height] * (len(panels) - 3)
    figure, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, 1.5 + 0.07 * sum(heights)),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for axis, (name, values) in zip(axes[:, 0], panels, strict=True):
        axis.imshow(
            values.detach().float().cpu().T,
            aspect="auto",
            cmap="gray_r",
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        axis.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        axis.set_yticks([])
    axes[-1, 0].set_xlabel("time step")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def save(figure, path) -> None:
    """Write a figure to `path` (PNG) and free it."""
    plt = _pyplot()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_curves(
    series: dict[str, tuple[list, list, list | None, list | None]],
    *,
    xlabel: str,
    ylabel: str = "bit errors per sequence",
    title: str = "",
    vline: float | None = None,
):
    """Lines with optional bands: series name -> (x, y, y_low, y_high). `vline` marks e.g. the
    longest training length. Returns a matplotlib Figure."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, (x, y, low, high) in series.items():
        (line,) = axis.plot(x, y, marker="o" if len(x) <= 30 else None, label=name)
        if low is not None and high is not None:
            axis.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
    if vline is not None:
        axis.axvline(vline, color="gray", linestyle="--", linewidth=1, label="trained up to")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    highest = max((max(y) for _, y, _, _ in series.values() if y), default=0)
    if highest > 50:  # errors in the hundreds: a log scale that still shows 0
        axis.set_yscale("symlog", linthresh=1.0)
    axis.set_ylim(bottom=0)
    return _finish(figure, axis, title=title, legend_size=8)


def plot_learning_curves(
    runs: dict[str, list[tuple[list, list]]], *, solved_below: float | None, title: str = ""
):
    """Validation bit errors against sequences seen: label -> one (x, y) per run, a colour
    per label and a line per seed; `solved_below` drawn as the line runs stop at."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, lines) in enumerate(runs.items()):
        for seed, (x, y) in enumerate(lines):
            colour = colours[index % len(colours)]
            axis.plot(x, y, color=colour, alpha=0.8, label=None if seed else label)
    if solved_below is not None:
        axis.axhline(solved_below, color="gray", linestyle="--", linewidth=1, label="solved")
    axis.set_yscale("symlog", linthresh=0.1)
    axis.set_ylim(bottom=0)
    axis.set_xlabel("sequences seen")
    axis.set_ylabel("bit errors per sequence (validation)")
    return _finish(figure, axis, title=title, legend_size=7)


def _finish(figure, axis, *, title: str, legend_size: int):
    """The line plots' common end: a light grid, the legend, the title if any, a tight layout."""
    axis.grid(alpha=0.3)
    axis.legend(fontsize=legend_size)
    if title:
        axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def grid_series(
    rows: list[dict[str, Any]], x_key: str, y_key: str = BIT_ERRORS, name: str = ""
) -> dict[str, tuple[list, list, None, None]]:
    """One line per combination of the other grid coordinates (memory size included), with
    `x_key` along x: ``{label: (x, y, None, None)}`` for `plot_curves`; `name` starts every
    label."""
    lines: dict[str, tuple[list, list, None, None]] = {}
    several_sizes = len({r["memory_slots"] for r in rows}) > 1
    for row in sorted(rows, key=lambda r: r[x_key]):
        others = {k: v for k, v in row.items() if k not in (x_key, *ROW_MEASUREMENTS)}
        label = ", ".join(f"{k} {v}" for k, v in others.items())
        if several_sizes:
            label = ", ".join(filter(None, [label, f"{row['memory_slots']} slots"]))
        label = ", ".join(filter(None, [name, label]))
        x, y, _, _ = lines.setdefault(label or y_key.replace("_", " "), ([], [], None, None))
        x.append(row[x_key])
        y.append(row[y_key])
    return lines


def plot_diagnostics(results: EvaluationResults, channels: str | None = None):
    """Where in its answer the model fails, one line per generalisation point: wrong bits per
    part of the answer where the task defines parts (repeat copy: per repetition, then the end
    marker), else per answer position. `channels`: only that group of output channels (a key
    of the rows' "segment_channel_errors", e.g. "end marker": where a model that cannot count
    emits its marker)."""
    rows = results.generalisation.rows
    by_segment = all(SEGMENT_ERRORS in row for row in rows)
    series = {}
    for row in rows:
        if channels is not None:
            values = list(row[SEGMENT_CHANNEL_ERRORS][channels].values())
        else:
            values = list(row[SEGMENT_ERRORS].values()) if by_segment else row[POSITION_ERRORS]
        series[point_label(row)] = (list(range(1, len(values) + 1)), values, None, None)
    which = f", {channels} bits only" if channels is not None else ""
    return plot_curves(
        series,
        xlabel="part of the answer (repetitions, then end marker)" if by_segment else "position",
        ylabel="wrong bits" + (" per part" if by_segment else " per position"),
        title=f"{results.task}, {results.model}: where the errors are{which}",
    )


def plot_agreement(results: EvaluationResults):
    """A student and its teacher: the fraction of output bits on which they agree and of
    sequences on which they agree exactly, over the generalisation grid, and the bits agreeing
    at each memory size of the capacity grid."""
    grid, capacity = results.generalisation, results.capacity
    series = grid_series(grid.rows, grid.parameter, AGREEMENT, "bits")
    series |= grid_series(grid.rows, grid.parameter, EXACT_AGREEMENT, "whole sequences")
    if capacity is not None:
        series |= grid_series(capacity.rows, capacity.parameter, AGREEMENT, "bits")
    return plot_curves(
        series,
        xlabel=grid.parameter,
        ylabel="fraction on which student and teacher agree",
        title=f"{results.task}: {results.model} ← {results.conversion.teacher_model}",
        vline=results.trained.get(f"max_{grid.parameter}"),
    )


def plot_results(results: EvaluationResults) -> dict[str, Any]:
    """The evaluation's figures by name: "generalisation", "diagnostics" (and where the rows
    split it by output channels, "diagnostics_<group>", e.g. "diagnostics_end_marker"), for a
    model with memory "capacity", and for a student "agreement" (and its teacher's errors
    beside its own in "generalisation")."""
    grid = results.generalisation
    student = f"student {results.model}" if results.conversion else ""
    series = grid_series(grid.rows, grid.parameter, name=student)
    if results.conversion is not None:
        teacher = f"teacher {results.conversion.teacher_model}"
        series |= grid_series(grid.rows, grid.parameter, TEACHER_BIT_ERRORS, teacher)
    figures = {
        "generalisation": plot_curves(
            series,
            xlabel=grid.parameter,
            title=f"{results.task}, {results.model}: generalisation",
            vline=results.trained.get(f"max_{grid.parameter}"),
        )
    }
    figures["diagnostics"] = plot_diagnostics(results)
    rows = grid.rows
    if all(SEGMENT_CHANNEL_ERRORS in row for row in rows):
        for group in rows[0][SEGMENT_CHANNEL_ERRORS]:
            name = "diagnostics_" + group.replace(" ", "_")
            figures[name] = plot_diagnostics(results, channels=group)
    if results.capacity is not None:
        figures["capacity"] = plot_curves(
            grid_series(results.capacity.rows, results.capacity.parameter),
            xlabel=results.capacity.parameter,
            title=f"{results.task}, {results.model}: capacity",
        )
    if results.conversion is not None:
        figures["agreement"] = plot_agreement(results)
    return figures
