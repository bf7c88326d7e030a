"""Generalisation and capacity grids: a trained model on fixed-seed data beyond its training.

A task is any object with ``sample(batch_size, generator, **difficulty)`` returning
``(inputs, targets, mask)`` whose difficulty keys come in ``min_<name>``/``max_<name>`` pairs
(see tasks/); a grid point fixes some of them, e.g. ``{"length": 50}`` means
``min_length = max_length = 50``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ntm.metrics import bit_errors_per_sequence, cost_bits_per_sequence


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
) -> dict[str, Any]:
    """Both metrics of `model` at one grid point, on `sequences` fixed-seed sequences.

    memory_slots: the memory size to run with (None: the model's own). Returns a row
    ``{**point, "memory_slots", "bit_errors", "cost_bits", "sequences"}``.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    difficulty = as_difficulty(point)
    errors = costs = 0.0
    done = 0
    while done < sequences:
        size = min(batch_size, sequences - done)
        inputs, targets, mask = (t.to(device) for t in task.sample(size, generator, **difficulty))
        state = model.initial_state(size, memory_slots=memory_slots, device=device)
        logits = model(inputs, state)[0]
        errors += bit_errors_per_sequence(logits, targets, mask).item() * size
        costs += cost_bits_per_sequence(logits, targets, mask).item() * size
        done += size
    return {
        **point,
        "memory_slots": memory_slots or getattr(model, "memory_slots", None),
        "bit_errors": errors / done,
        "cost_bits": costs / done,
        "sequences": done,
    }


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
            print(
                f"  [{index + 1}/{len(points)}] slots={rows[-1]['memory_slots']} {point}: "
                f"{rows[-1]['bit_errors']:.3f} bit errors",
                flush=True,
            )
    return rows


def longest_solved(rows: Sequence[Mapping[str, Any]], key: str, threshold: float) -> int | None:
    """The largest `key` value among rows whose bit errors are below `threshold`, counting up
    from the smallest and stopping at the first failure (None if even the smallest fails)."""
    best = None
    for row in sorted(rows, key=lambda r: r[key]):
        if row["bit_errors"] >= threshold:
            break
        best = row[key]
    return best


def capacity(
    model: nn.Module,
    task: Any,
    slots: Sequence[int],
    points: Sequence[Mapping[str, int]],
    *,
    threshold: float,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """The error surface over memory sizes x grid points, and per memory size the longest
    solved value of the grid's first parameter (bit errors per sequence below `threshold`)."""
    if not hasattr(model, "memory_slots"):
        return {"rows": [], "longest_solved": {}}  # a model without memory has no capacity
    key = next(iter(points[0]))
    rows, longest = [], {}
    for size in slots:
        size_rows = evaluate_grid(
            model, task, points, memory_slots=size, progress=progress, **options
        )
        rows += size_rows
        longest[str(size)] = longest_solved(size_rows, key, threshold)
    return {"parameter": key, "threshold": threshold, "rows": rows, "longest_solved": longest}
