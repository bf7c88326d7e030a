"""Copy (Graves et al. 2014, section 4.1): read a sequence of random bit vectors, then write it.

Input channels: `width` data bits, then one delimiter channel. Output: the `width` bits.
The sequence (L steps) is followed by one delimiter step and then L blank steps during which
the target is the sequence again; only those last L steps are scored. t = 2L + 1.

Width 2, L = 2, sequence (1, 0), (1, 1); rows are channels, columns time, "." is 0::

    time         0  1  2  3  4
    in  bit 0    1  1  .  .  .
    in  bit 1    0  1  .  .  .
    in  delim    .  .  1  .  .
    out bit 0    .  .  .  1  1
    out bit 1    .  .  .  0  1
    mask         .  .  .  1  1
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tasks.base import Batch, Task, check_int, random_bits


class CopyTask(Task):
    """Copy a random sequence of `width`-bit vectors after a delimiter.

    Sequence length is drawn per batch uniformly in [min_length, max_length].
    """

    name = "copy"
    range_floors: ClassVar[dict[str, int]] = {"length": 1}

    def __init__(self, *, width: int = 8, min_length: int = 1, max_length: int = 20) -> None:
        self.width = check_int("width", width, minimum=1)
        super().__init__(min_length=min_length, max_length=max_length)

    @property
    def input_size(self) -> int:
        """Data bits plus the delimiter channel."""
        return self.width + 1

    @property
    def output_size(self) -> int:
        return self.width

    def memory_needed(self, **difficulty: int) -> int:
        """One slot per vector of the longest sequence."""
        return self.resolve(**difficulty)["max_length"]

    def _generate(self, batch_size: int, generator: torch.Generator, *, length: int) -> Batch:
        b, n, w = batch_size, length, self.width
        delimiter = w  # the channel after the data bits
        data = random_bits((b, n, w), generator)  # (b, L, w)
        steps = 2 * n + 1
        recall = slice(n + 1, steps)  # the blank steps after the delimiter

        inputs = torch.zeros(b, steps, self.input_size)
        inputs[:, :n, :w] = data
        inputs[:, n, delimiter] = 1.0
        targets = torch.zeros(b, steps, self.output_size)
        targets[:, recall] = data
        mask = torch.zeros(b, steps, dtype=torch.bool)
        mask[:, recall] = True
        return Batch(inputs, targets, mask)

    def _describe(self) -> dict[str, object]:
        return {"width": self.width, **self.difficulty}
