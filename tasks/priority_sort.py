"""Priority sort (Graves et al. 2014, section 4.5): read vectors with priorities, then write the
highest-priority ones in order of priority, highest first.

Input channels: `width` data bits, a priority channel (uniform in [-1, 1)), a delimiter
channel. Output channels: the `width` data bits.
Time: N item steps (bits and priority), one delimiter step, then K = min(keep, N) blank steps
whose target is the K highest-priority vectors, highest priority first; only those are scored.
t = N + 1 + K. The paper uses N = 20, keep = 16.

Width 2, N = 3, keep = 2; vectors (1, 0), (0, 1), (1, 1) with priorities -0.5, 0.8, 0.1;
"." is 0::

    time          0     1     2     3    4    5
    in  bit 0     1     0     1     .    .    .
    in  bit 1     0     1     1     .    .    .
    in  priority -0.5   0.8   0.1   .    .    .
    in  delim     .     .     .     1    .    .
    out bit 0     .     .     .     .    0    1
    out bit 1     .     .     .     .    1    1
    mask          .     .     .     .    1    1
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tasks.base import Batch, Task, check_int, random_bits


def random_priorities(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Independent priorities uniform in [-1, 1), float32, on the CPU."""
    return torch.rand(shape, generator=generator) * 2 - 1


class PrioritySortTask(Task):
    """Sort random `width`-bit vectors by a random priority and keep the `keep` highest.

    The number of input vectors is drawn per batch uniformly in [min_items, max_items].
    """

    name = "priority_sort"
    range_floors: ClassVar[dict[str, int]] = {"items": 1}

    def __init__(
        self, *, width: int = 8, keep: int = 16, min_items: int = 20, max_items: int = 20
    ) -> None:
        self.width = check_int("width", width, minimum=1)
        self.keep = check_int("keep", keep, minimum=1)
        super().__init__(min_items=min_items, max_items=max_items)

    @property
    def input_size(self) -> int:
        """Data bits, priority and delimiter."""
        return self.width + 2

    @property
    def output_size(self) -> int:
        return self.width

    def memory_needed(self, **difficulty: int) -> int:
        """Every input vector is stored before the first is written out."""
        return self.resolve(**difficulty)["max_items"]

    def _generate(self, batch_size: int, generator: torch.Generator, *, items: int) -> Batch:
        b, n, w = batch_size, items, self.width
        kept = min(self.keep, n)
        priority, delimiter = w, w + 1  # input channels after the data bits
        data = random_bits((b, n, w), generator)  # (b, N, w)
        priorities = random_priorities((b, n), generator)  # (b, N)
        order = priorities.argsort(dim=1, descending=True)[:, :kept]  # (b, K)
        ranked = data.gather(1, order.unsqueeze(-1).expand(-1, -1, w))  # (b, K, w)
        steps = n + 1 + kept

        inputs = torch.zeros(b, steps, self.input_size)
        inputs[:, :n, :w] = data
        inputs[:, :n, priority] = priorities
        inputs[:, n, delimiter] = 1.0
        targets = torch.zeros(b, steps, self.output_size)
        targets[:, n + 1 :] = ranked
        mask = torch.zeros(b, steps, dtype=torch.bool)
        mask[:, n + 1 :] = True
        return Batch(inputs, targets, mask)

    def _describe(self) -> dict[str, object]:
        return {"width": self.width, "keep": self.keep, **self.difficulty}
