"""Generalisation and capacity grids: a trained model on fixed-seed data beyond its training,
and the evaluation of a checkpoint (`evaluate.py`).

A task is any object with ``sample(batch_size, generator, **difficulty)`` returning
``(inputs, targets, mask)`` whose difficulty keys come in ``min_<name>``/``max_<name>`` pairs
(see tasks/); a grid point fixes some of them, e.g. ``{"length": 50}`` means
``min_length = max_length = 50``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ntm.experiment import plots
from ntm.experiment.config import (
    ConfigError,
    check_settings,
    check_types,
    cpu_settings,
    load_trained,
)
from ntm.experiment.results import (
    AGREEMENT,
    BIT_ERRORS,
    COST_BITS,
    EXACT_AGREEMENT,
    POSITION_ERRORS,
    RESULTS_FILE,
    SEGMENT_CHANNEL_ERRORS,
    SEGMENT_ERRORS,
    TEACHER_BIT_ERRORS,
    Conversion,
    EvaluationResults,
    Grid,
    point_label,
    write,
)
from ntm.metrics import (
    agreement,
    bit_errors_per_position,
    bit_errors_per_sequence,
    cost_bits_per_sequence,
    exact_agreement,
)

log = logging.getLogger(__name__)


def grid_points(grid: Mapping[str, Sequence[int]]) -> list[dict[str, int]]:
    """All combinations of a grid: ``{"length": [10, 20], "repeats": [5]}`` ->
    ``[{"length": 10, "repeats": 5}, {"length": 20, "repeats": 5}]``."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def as_difficulty(point: Mapping[str, int]) -> dict[str, int]:
    """``{"length": 50}`` -> ``{"min_length": 50, "max_length": 50}``."""
    return {f"{kind}_{name}": value for name, value in point.items() for kind in ("min", "max")}


@torch.no_grad()
def evaluate_point(
    model: nn.Module,
    task: Any,
    point: Mapping[str, int],
    *,
    memory_slots: int | None = None,
    sequences: int = 64,
    batch_size: int = 32,
    seed: int = 1234,
    teacher: nn.Module | None = None,
) -> dict[str, Any]:
    """The metrics of `model` at one grid point, on `sequences` fixed-seed sequences.

    memory_slots: the memory size to run with (None: the model's own). Returns a row
    ``{**point, "memory_slots", "bit_errors", "cost_bits", "sequences", "position_errors"}``
    and, for a task with `answer_segments` (repeat copy), "segment_errors": wrong bits per
    part of the answer (each repetition, the end marker), and where the task also groups its
    `output_channels` (data bits, end marker), "segment_channel_errors": the same per group,
    e.g. ``{"end marker": {"repeat 12": 0.9, ...}, "data": {...}}``. With a `teacher`
    (conversion) the row also holds "teacher_bit_errors", "agreement" and "exact_agreement"
    (results.py); a teacher with memory runs with `memory_slots` too.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    difficulty = as_difficulty(point)
    errors = costs = 0.0
    compared = dict.fromkeys((TEACHER_BIT_ERRORS, AGREEMENT, EXACT_AGREEMENT), 0.0)
    channels = getattr(task, "output_channels", dict)()  # {group: (first, last + 1)}
    positions = None
    channel_positions = dict.fromkeys(channels, 0.0)
    done = 0
    while done < sequences:
        size = min(batch_size, sequences - done)
        inputs, targets, mask = (t.to(device) for t in task.sample(size, generator, **difficulty))
        state = model.initial_state(size, memory_slots=memory_slots, device=device)
        logits = model(inputs, state)[0]
        errors += bit_errors_per_sequence(logits, targets, mask).item() * size
        costs += cost_bits_per_sequence(logits, targets, mask).item() * size
        at_positions = bit_errors_per_position(logits, targets, mask) * size
        positions = at_positions if positions is None else positions + at_positions
        for group, (first, end) in channels.items():
            channel_positions[group] += size * bit_errors_per_position(
                logits[..., first:end], targets[..., first:end], mask
            )
        if teacher is not None:
            state = teacher.initial_state(size, memory_slots=memory_slots, device=device)
            taught = teacher(inputs, state)[0]
            compared[TEACHER_BIT_ERRORS] += bit_errors_per_sequence(taught, targets, mask) * size
            compared[AGREEMENT] += agreement(logits, taught, mask) * size
            compared[EXACT_AGREEMENT] += exact_agreement(logits, taught, mask) * size
        done += size
    row = {
        **point,
        "memory_slots": memory_slots or getattr(model, "memory_slots", None),
        BIT_ERRORS: errors / done,
        COST_BITS: costs / done,
        "sequences": done,
        POSITION_ERRORS: (positions / done).tolist(),
    }
    if teacher is not None:
        row |= {name: float(total) / done for name, total in compared.items()}
    segments = _answer_segments(task, difficulty)
    if segments:
        row[SEGMENT_ERRORS] = {
            name: sum(row[POSITION_ERRORS][start:end]) for name, (start, end) in segments.items()
        }
    if segments and channels:
        row[SEGMENT_CHANNEL_ERRORS] = {
            group: {
                name: (errors[start:end].sum() / done).item()
                for name, (start, end) in segments.items()
            }
            for group, errors in channel_positions.items()
        }
    return row


def _answer_segments(task: Any, difficulty: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """The task's answer segments at a point that fixes every range (else none)."""
    if not hasattr(task, "answer_segments"):
        return {}
    ranges = task.resolve(**difficulty)
    names = {key.split("_", 1)[1] for key in ranges}
    if any(ranges[f"min_{name}"] != ranges[f"max_{name}"] for name in names):
        return {}
    return task.answer_segments(**{name: ranges[f"max_{name}"] for name in names})


def evaluate_grid(
    model: nn.Module,
    task: Any,
    points: Iterable[Mapping[str, int]],
    *,
    memory_slots: int | None = None,
    progress: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:
    """`evaluate_point` at every point; `options` go to it (sequences, batch_size, seed)."""
    points = list(points)
    rows = []
    for index, point in enumerate(points):
        rows.append(evaluate_point(model, task, point, memory_slots=memory_slots, **options))
        if progress:
            slots = rows[-1]["memory_slots"]
            where = point_label(point) + (f", {slots} slots" if slots else "")
            log.info(
                "[%d/%d] %s: %.3f bit errors", index + 1, len(points), where, rows[-1][BIT_ERRORS]
            )
    return rows


def longest_solved(rows: Sequence[Mapping[str, Any]], key: str, threshold: float) -> int | None:
    """The largest `key` value among rows whose bit errors are below `threshold`, counting up
    from the smallest and stopping at the first failure (None if even the smallest fails)."""
    best = None
    for row in sorted(rows, key=lambda r: r[key]):
        if row[BIT_ERRORS] >= threshold:
            break
        best = row[key]
    return best


def generalisation(
    model: nn.Module,
    task: Any,
    points: Sequence[Mapping[str, int]],
    *,
    threshold: float,
    progress: bool = False,
    **options: Any,
) -> Grid:
    """Bit errors over grid points at the model's own memory size, and the longest solved
    value of the grid's first parameter (bit errors per sequence below `threshold`)."""
    key = next(iter(points[0]))
    rows = evaluate_grid(model, task, points, progress=progress, **options)
    slots = str(rows[0]["memory_slots"]).lower()  # "128", or "none" for a model without memory
    return Grid(
        parameter=key, rows=rows, longest_solved={slots: longest_solved(rows, key, threshold)}
    )


def capacity(
    model: nn.Module,
    task: Any,
    slots: Sequence[int],
    points: Sequence[Mapping[str, int]],
    *,
    threshold: float,
    progress: bool = False,
    **options: Any,
) -> Grid | None:
    """The error surface over memory sizes x grid points, and per memory size the longest
    solved value of the grid's first parameter (bit errors per sequence below `threshold`).
    None for a model without memory (no `memory_slots`)."""
    if not hasattr(model, "memory_slots"):
        return None
    key = next(iter(points[0]))
    rows, longest = [], {}
    for size in slots:
        size_rows = evaluate_grid(
            model, task, points, memory_slots=size, progress=progress, **options
        )
        rows += size_rows
        longest[str(size)] = longest_solved(size_rows, key, threshold)
    return Grid(parameter=key, rows=rows, longest_solved=longest)


def check_evaluation(task: Any, settings: Mapping[str, Any]) -> None:
    """A `ConfigError` now for evaluation settings that would otherwise fail only once
    training is over: counts below 1, grid points the task refuses."""
    counts = {k: settings[k] for k in ("sequences", "batch_size")}
    counts.update({f"capacity.slots[{i}]": n for i, n in enumerate(settings["capacity"]["slots"])})
    for name, count in counts.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"evaluation.{name}: expected an integer >= 1, got {count!r}")
    for name, grid in (("grid", settings["grid"]), ("capacity.grid", settings["capacity"]["grid"])):
        for point in grid_points(grid):
            try:
                task.resolve(**as_difficulty(point))
            except (TypeError, ValueError) as error:
                raise ConfigError(f"evaluation.{name}: {error}") from None


def evaluate_model(
    model: nn.Module,
    task: Any,
    settings: Mapping[str, Any],
    *,
    label: str,
    seed: int,
    checkpoint: str = "",
    teacher: nn.Module | None = None,
    conversion: Conversion | None = None,
) -> EvaluationResults:
    """The generalisation and capacity grids of `settings` (a run config's `evaluation` node:
    grid, capacity.slots, capacity.grid, sequences, batch_size, seed, point_solved_below);
    for a student, its `teacher` beside it at every point and the `conversion` recorded."""
    options = {k: settings[k] for k in ("sequences", "batch_size", "seed")}
    if teacher is not None:
        options["teacher"] = teacher.eval().to(next(model.parameters()).device)
    threshold = settings["point_solved_below"]
    model.eval()
    log.info("evaluating generalisation on %s", dict(settings["grid"]))
    grid = generalisation(
        model, task, grid_points(settings["grid"]), threshold=threshold, progress=True, **options
    )
    log.info("evaluating capacity: memory slots %s", list(settings["capacity"]["slots"]))
    memory = capacity(
        model,
        task,
        list(settings["capacity"]["slots"]),
        grid_points(settings["capacity"]["grid"]),
        threshold=threshold,
        progress=True,
        **options,
    )
    return EvaluationResults(
        task=task.name,
        model=label,
        seed=seed,
        parameters=sum(p.numel() for p in model.parameters()),
        trained=task.difficulty,
        point_solved_below=threshold,
        generalisation=grid,
        capacity=memory,
        checkpoint=str(checkpoint),
        conversion=conversion,
    )


def save_results(results: EvaluationResults, output_dir: Path) -> dict[str, Path]:
    """`results.json` and the figures into `output_dir`; returns the figures' PNG paths by
    name (none without matplotlib)."""
    write(results, output_dir / RESULTS_FILE)
    if not plots.available():
        plots.warn_unavailable("evaluation figures")
        return {}
    paths = {}
    for name, figure in plots.plot_results(results).items():
        paths[name] = output_dir / f"{name}.png"
        plots.save(figure, paths[name])
    return paths


def evaluate_checkpoint(cfg: DictConfig, output_dir: str | Path) -> EvaluationResults:
    """`evaluate.py`: rebuild a run's task and model from `cfg.ckpt_path` alone, evaluate it
    with the run's evaluation settings updated by the non-null ones of `cfg.evaluation`, and
    save into `output_dir` (never into the run's folder: its records stay as training left
    them)."""
    if not cfg.ckpt_path:
        raise ConfigError("ckpt_path: which checkpoint? python evaluate.py ckpt_path=<file>")
    check_settings(cfg)
    with cpu_settings(cfg):
        return _evaluate_checkpoint(cfg, Path(cfg.ckpt_path), Path(output_dir))


def _evaluate_checkpoint(cfg: DictConfig, path: Path, output_dir: Path) -> EvaluationResults:
    run_cfg, task, model, conversion = load_trained(path)
    changes = {k: v for k, v in OmegaConf.to_container(cfg.evaluation).items() if v is not None}
    changes["capacity"] = {k: v for k, v in changes.get("capacity", {}).items() if v is not None}
    trained_with = run_cfg.evaluation
    run_cfg.evaluation = OmegaConf.merge(trained_with, changes)
    check_types(run_cfg.evaluation, trained_with, "evaluation.")
    check_evaluation(task, OmegaConf.to_container(run_cfg.evaluation))
    # A student is evaluated beside its teacher, as after training.
    teacher = load_trained(conversion.teacher, "teacher").model if conversion else None
    results = evaluate_model(
        model,
        task,
        OmegaConf.to_container(run_cfg.evaluation),
        label=run_cfg.model.label,
        seed=run_cfg.seed,
        checkpoint=str(path),
        teacher=teacher,
        conversion=conversion,
    )
    save_results(results, output_dir)
    return results
