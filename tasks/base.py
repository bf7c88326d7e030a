"""What every task shares: the `Batch` it returns and the `Task` base class.

A task owns its difficulty ranges (e.g. ``min_length``/``max_length``). Each call to
`Task.sample` draws one value per range for the whole batch, so a batch never needs padding,
and callers may override any range for that call (generalisation tests on longer sequences).
"""

from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor


class Batch(NamedTuple):
    """One batch of a task; every sequence in it has the same length t.

    inputs:  (b, t, input_size) float32; bits are 0/1, a count channel may hold a real number.
    targets: (b, t, output_size) float32 0/1; zero where the mask is false.
    mask:    (b, t) bool; the steps that are scored (loss and metrics only there).
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Return `value` if it is an int >= `minimum`, else raise with the parameter's name."""
    # bool is an int subclass; True as a width is a config mistake, not a 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value}")
    return value


def draw_int(generator: torch.Generator, low: int, high: int) -> int:
    """A uniform integer in [low, high] (both inclusive), drawn from `generator`."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def random_bits(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Independent fair 0/1 bits of the given shape, float32, on the CPU."""
    return torch.randint(0, 2, shape, generator=generator, dtype=torch.float32)


class Task(abc.ABC):
    """An algorithmic task that generates its own data, deterministically from a generator.

    Subclasses set `name` and `range_floors`, call ``super().__init__(**ranges)`` with one
    ``min_<r>``/``max_<r>`` pair per range ``r``, and implement `input_size`, `output_size`,
    `_generate` and `memory_needed`.
    """

    #: Short name used in configs and logs ("copy", ...).
    name: ClassVar[str]
    #: For each difficulty range ``r`` (keys ``min_r``/``max_r``), the smallest value allowed.
    range_floors: ClassVar[dict[str, int]]

    def __init__(self, **ranges: int) -> None:
        self._ranges = self._checked(ranges)

    @property
    @abc.abstractmethod
    def input_size(self) -> int:
        """Number of input channels."""

    @property
    @abc.abstractmethod
    def output_size(self) -> int:
        """Number of target channels."""

    @property
    def difficulty(self) -> dict[str, int]:
        """The configured ranges, e.g. ``{"min_length": 1, "max_length": 20}`` (a copy)."""
        return dict(self._ranges)

    def resolve(self, **overrides: int) -> dict[str, int]:
        """The configured ranges with `overrides` applied and checked.

        Raises TypeError for a key that is not one of this task's ranges, ValueError for a
        range that is empty or below its floor.
        """
        unknown = sorted(set(overrides) - set(self._ranges))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown difficulty {unknown}; "
                f"allowed: {sorted(self._ranges)}"
            )
        return self._checked({**self._ranges, **overrides})

    def sample(self, batch_size: int, generator: torch.Generator, **difficulty: int) -> Batch:
        """Draw one batch; one value per range for the whole batch (no padding).

        `difficulty` overrides configured ranges for this call only, e.g.
        ``task.sample(8, g, min_length=40, max_length=40)``.
        Returns a `Batch` of (b, t, input_size), (b, t, output_size), (b, t).
        """
        check_int("batch_size", batch_size, minimum=1)
        ranges = self.resolve(**difficulty)
        # Draw in range_floors order so the stream depends only on the generator's seed.
        drawn = {
            r: draw_int(generator, ranges[f"min_{r}"], ranges[f"max_{r}"])
            for r in self.range_floors
        }
        return self._generate(batch_size, generator, **drawn)

    @abc.abstractmethod
    def _generate(self, batch_size: int, generator: torch.Generator, **drawn: int) -> Batch:
        """One batch at exactly the drawn difficulty (e.g. ``length=5``)."""

    @abc.abstractmethod
    def memory_needed(self, **difficulty: int) -> int:
        """Memory slots the hardest sequence of this difficulty needs to store."""

    def _checked(self, ranges: dict[str, int]) -> dict[str, int]:
        """`ranges` if it has exactly this task's keys and floor <= min <= max for each."""
        expected = {f"{kind}_{r}" for r in self.range_floors for kind in ("min", "max")}
        if set(ranges) != expected:
            raise TypeError(f"expected difficulty keys {sorted(expected)}, got {sorted(ranges)}")
        for r, floor in self.range_floors.items():
            low = check_int(f"min_{r}", ranges[f"min_{r}"], minimum=floor)
            high = check_int(f"max_{r}", ranges[f"max_{r}"], minimum=floor)
            if low > high:
                raise ValueError(
                    f"need {floor} <= min_{r} <= max_{r}, got min_{r}={low}, max_{r}={high}"
                )
        return dict(ranges)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self._describe().items())
        return f"{type(self).__name__}({fields})"

    def _describe(self) -> dict[str, object]:
        """Constructor arguments shown by repr; subclasses add their fixed sizes."""
        return dict(self._ranges)
