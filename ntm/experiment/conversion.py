"""Conversion: a student of one architecture trained on a trained teacher's outputs
(README "Conversion"). The pieces here need no config machinery; `config.build` wires them in.

- `WiderTask`: the task's training stream drawn from wider ranges (longer sequences, more
  items) than the teacher was trained on, so one can ask whether conversion beyond the
  training range is possible at all.
- `closest_size`: the size (e.g. a controller's hidden_size) whose parameter count is closest
  to a budget, so "can X replace Y" is asked at equal size as well as at default size.
- `record`: what a run's records say about its teacher.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig

from ntm.experiment.results import Conversion
from tasks.base import Batch


class WiderTask:
    """`task` with its ranges replaced by `ranges` when sampling (e.g. ``{"min_length": 1,
    "max_length": 40}``), for a training stream; everything else, `difficulty` included, is
    `task`'s own, so the run still counts 2× and 6× from the range the teacher was trained on.
    Overrides given to `sample` win over `ranges`, as they do over a task's own ranges."""

    def __init__(self, task: Any, ranges: Mapping[str, int]) -> None:
        self.task = task
        self.ranges = task.resolve(**ranges)  # checked now: unknown keys, empty ranges

    def sample(self, batch_size: int, generator: torch.Generator, **difficulty: int) -> Batch:
        return self.task.sample(batch_size, generator, **{**self.ranges, **difficulty})

    def __getattr__(self, name: str) -> Any:
        # Only for what the task has: unpickling (DataLoader workers) asks for dunders before
        # `task` is set, and looking it up here would recurse.
        if name.startswith("__") or name == "task":
            raise AttributeError(name)
        return getattr(self.task, name)


def closest_size(count: Callable[[int], int], target: int, *, step: int = 1) -> int:
    """The multiple of `step` whose `count` (e.g. a model's parameter count at that hidden
    size, increasing with it) is closest to `target`: doubling to bracket the target, then
    bisection, so a few dozen counts at most."""
    count = functools.cache(count)
    high = step
    while count(high) < target:
        high *= 2
    low = max(step, high // 2 // step * step)
    if count(low) >= target:  # already at the smallest size
        return low
    while high - low > step:  # invariant: count(low) < target <= count(high)
        middle = (low + high) // 2 // step * step
        low, high = (middle, high) if count(middle) < target else (low, middle)
    return min((low, high), key=lambda size: abs(count(size) - target))


def record(
    cfg: DictConfig, teacher: DictConfig, teacher_parameters: int, target: int | None
) -> Conversion:
    """The `Conversion` of a student's run config `cfg` with the teacher's run config."""
    return Conversion(
        teacher=str(cfg.teacher),
        teacher_model=teacher.model.label,
        teacher_seed=teacher.seed,
        teacher_parameters=teacher_parameters,
        inputs=dict(cfg.get("teacher_inputs") or {}),
        temperature=float(cfg.teacher_temperature),
        parameter_target=target,
    )
