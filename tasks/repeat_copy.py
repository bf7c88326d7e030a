"""Repeat copy (Graves et al. 2014, section 4.2): write a sequence R times, then an end marker.

Input channels: `width` data bits, a start-delimiter channel, a repeat-count channel.
Output channels: `width` data bits and an end-marker channel.
Time: one start step, L data steps, one step carrying the count, then R*L + 1 blank steps
whose target is the sequence R times and then the end marker; only those are scored.
t = L + 2 + R*L + 1.

The count is fed as R / max_repeats (`count_encoding="fraction"`, the default), or standardised
to mean 0 and variance 1 over the training range's counts, drawn uniformly, as a widely used
PyTorch NTM (pytorch-ntm) feeds it (`"standard"`: (R - mean) / std; 1-10 gives -1.57 to 1.57).
Either way the constants come from the configured range and stay fixed when `sample` overrides
it, so a model trained on up to 10 repeats reads 20 repeats as 2.0 (or 5.05): extrapolation, as
in the paper's generalisation tests.
The count step is the only input that marks the end of the data, so "standard" needs an even
number of counts in the range: with an odd number the middle count would be fed as 0.

`end_marker_from_repeats` leaves the end marker's step unscored in batches drawn with a
max_repeats below it (any batch: an evaluation at fewer repeats would not score it either), so
that the repeat-count curriculum's first phase trains copying alone. With one repetition and
the marker scored, NTM-LSTM learned to copy through its memory in none of 5 runs of 64,000
sequences, and without it in 3 of 3 (README "Repeat copy: the end marker later").

Width 2, L = 2, R = 2, max_repeats = 4 (count 0.5), sequence (1, 0), (0, 1); "." is 0::

    time        0    1    2    3    4    5    6    7    8
    in  bit 0   .    1    0    .    .    .    .    .    .
    in  bit 1   .    0    1    .    .    .    .    .    .
    in  start   1    .    .    .    .    .    .    .    .
    in  count   .    .    .   0.5   .    .    .    .    .
    out bit 0   .    .    .    .    1    0    1    0    .
    out bit 1   .    .    .    .    0    1    0    1    .
    out end     .    .    .    .    .    .    .    .    1
    mask        .    .    .    .    1    1    1    1    1
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tasks.base import Batch, Task, check_int, random_bits


class RepeatCopyTask(Task):
    """Copy a random sequence a given number of times, then emit an end marker.

    Length and repeat count are drawn per batch uniformly in their ranges.
    """

    name = "repeat_copy"
    range_floors: ClassVar[dict[str, int]] = {"length": 1, "repeats": 1}

    def __init__(
        self,
        *,
        width: int = 8,
        min_length: int = 1,
        max_length: int = 10,
        min_repeats: int = 1,
        max_repeats: int = 10,
        count_encoding: str = "fraction",
        end_marker_from_repeats: int = 1,
    ) -> None:
        self.width = check_int("width", width, minimum=1)
        super().__init__(
            min_length=min_length,
            max_length=max_length,
            min_repeats=min_repeats,
            max_repeats=max_repeats,
        )
        # Fixed at construction (the training range) so overrides extrapolate beyond it.
        self.count_encoding = count_encoding
        self.count_offset, self.count_scale = count_constants(
            count_encoding, min_repeats, max_repeats
        )
        # 1 (the default): every batch scores the end marker, max_repeats being at least 1
        self.end_marker_from_repeats = check_int(
            "end_marker_from_repeats", end_marker_from_repeats, minimum=1
        )

    @property
    def input_size(self) -> int:
        """Data bits, start delimiter and repeat count."""
        return self.width + 2

    @property
    def output_size(self) -> int:
        """Data bits and the end marker."""
        return self.width + 1

    def memory_needed(self, **difficulty: int) -> int:
        """The sequence is stored once however many times it is repeated."""
        return self.resolve(**difficulty)["max_length"]

    def sample(self, batch_size: int, generator: torch.Generator, **difficulty: int) -> Batch:
        """`Task.sample`, with the end marker's step (the last) unscored when the ranges'
        max_repeats is below `end_marker_from_repeats`."""
        batch = super().sample(batch_size, generator, **difficulty)
        if self.resolve(**difficulty)["max_repeats"] < self.end_marker_from_repeats:
            batch.targets[:, -1] = 0.0
            batch.mask[:, -1] = False
        return batch

    def _generate(
        self, batch_size: int, generator: torch.Generator, *, length: int, repeats: int
    ) -> Batch:
        b, n, w = batch_size, length, self.width
        start, count = w, w + 1  # input channels after the data bits
        end = w  # output channel after the data bits
        data = random_bits((b, n, w), generator)  # (b, L, w)
        answer_start = n + 2  # after the start step, the data and the count step
        steps = answer_start + repeats * n + 1

        inputs = torch.zeros(b, steps, self.input_size)
        inputs[:, 0, start] = 1.0
        inputs[:, 1 : n + 1, :w] = data
        inputs[:, n + 1, count] = (repeats - self.count_offset) / self.count_scale
        targets = torch.zeros(b, steps, self.output_size)
        targets[:, answer_start:-1, :w] = data.repeat(1, repeats, 1)  # (b, R*L, w)
        targets[:, -1, end] = 1.0
        mask = torch.zeros(b, steps, dtype=torch.bool)
        mask[:, answer_start:] = True
        return Batch(inputs, targets, mask)

    def answer_segments(self, *, length: int, repeats: int) -> dict[str, tuple[int, int]]:
        """The parts of the scored answer as [start, end) positions: each repetition, then the
        end marker. For diagnostics: a model that copies once but never returns to the start
        of its stored sequence is right on "repeat 1" and at chance on the others."""
        segments = {f"repeat {r + 1}": (r * length, (r + 1) * length) for r in range(repeats)}
        segments["end marker"] = (repeats * length, repeats * length + 1)
        return segments

    def output_channels(self) -> dict[str, tuple[int, int]]:
        """The output channels in groups, as [start, end) channel indices: the data bits and
        the end marker. For diagnostics: a model that cannot count emits the marker inside a
        repetition, which the "end marker" group's errors per repetition show apart from
        wrong data bits."""
        return {"data": (0, self.width), "end marker": (self.width, self.width + 1)}

    def _describe(self) -> dict[str, object]:
        return {
            "width": self.width,
            "count_encoding": self.count_encoding,
            "end_marker_from_repeats": self.end_marker_from_repeats,
            **self.difficulty,
        }


def count_constants(encoding: str, min_repeats: int, max_repeats: int) -> tuple[float, float]:
    """(offset, scale) such that a count R is fed as (R - offset) / scale."""
    if encoding == "fraction":
        return 0.0, float(max_repeats)
    if encoding == "standard":
        counts = max_repeats - min_repeats + 1
        if counts % 2:
            raise ValueError(
                f"count_encoding='standard' needs an even number of repeat counts, got "
                f"{min_repeats}-{max_repeats}: the middle one would be fed as 0, an unmarked step"
            )
        # mean and standard deviation of a count drawn uniformly from the range
        return (min_repeats + max_repeats) / 2, ((counts**2 - 1) / 12) ** 0.5
    raise ValueError(f"count_encoding must be 'fraction' or 'standard', got {encoding!r}")
