"""Associative recall (Graves et al. 2014, section 4.3): given one item, recall the next.

An item is `item_length` steps of `width` random bits. Input channels: the `width` bits, an
item-delimiter channel and a query-delimiter channel. Output: the `width` bits.
Time: for each of K items, one item-delimiter step then the item; then one query-delimiter
step, the query (one of the first K-1 items, drawn uniformly per sequence), a second
query-delimiter step, and `item_length` blank steps whose target is the item that followed
the query in the list; only those are scored.
t = K * (item_length + 1) + 1 + item_length + 1 + item_length.

Width 2, item_length 1, K = 3 items A = (1, 0), B = (0, 1), C = (1, 1), query B, answer C;
"." is 0::

    time        0  1  2  3  4  5  6  7  8  9
    in  bit 0   .  1  .  0  .  1  .  0  .  .
    in  bit 1   .  0  .  1  .  1  .  1  .  .
    in  item    1  .  1  .  1  .  .  .  .  .
    in  query   .  .  .  .  .  .  1  .  1  .
    out bit 0   .  .  .  .  .  .  .  .  .  1
    out bit 1   .  .  .  .  .  .  .  .  .  1
    mask        .  .  .  .  .  .  .  .  .  1
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tasks.base import Batch, Task, check_int, random_bits


class AssociativeRecallTask(Task):
    """Show K items, then one of them; the answer is the item that came after it.

    The number of items is drawn per batch uniformly in [min_items, max_items]; at least 2 so
    that some item has a successor. Items are not forced to be distinct.
    """

    name = "associative_recall"
    range_floors: ClassVar[dict[str, int]] = {"items": 2}

    def __init__(
        self, *, width: int = 6, item_length: int = 3, min_items: int = 2, max_items: int = 6
    ) -> None:
        self.width = check_int("width", width, minimum=1)
        self.item_length = check_int("item_length", item_length, minimum=1)
        super().__init__(min_items=min_items, max_items=max_items)

    @property
    def input_size(self) -> int:
        """Data bits, item delimiter and query delimiter."""
        return self.width + 2

    @property
    def output_size(self) -> int:
        return self.width

    def memory_needed(self, **difficulty: int) -> int:
        """One slot per vector of every item in the longest list."""
        return self.resolve(**difficulty)["max_items"] * self.item_length

    def _generate(self, batch_size: int, generator: torch.Generator, *, items: int) -> Batch:
        b, k, n, w = batch_size, items, self.item_length, self.width
        item_delimiter, query_delimiter = w, w + 1  # the channels after the data bits
        data = random_bits((b, k, n, w), generator)  # (b, K, item_length, w)
        # The last item has no successor, so the query is one of the first K-1.
        query_index = torch.randint(0, k - 1, (b,), generator=generator)
        rows = torch.arange(b)
        query, answer = data[rows, query_index], data[rows, query_index + 1]  # (b, n, w)

        # The list: each item is one delimiter step followed by its n data steps.
        listed = torch.zeros(b, k, n + 1, self.input_size)
        listed[:, :, 0, item_delimiter] = 1.0
        listed[:, :, 1:, :w] = data
        # The question: delimiter, query item, delimiter, then n blank steps to answer in.
        asked = torch.zeros(b, 2 * n + 2, self.input_size)
        asked[:, 0, query_delimiter] = 1.0
        asked[:, 1 : n + 1, :w] = query
        asked[:, n + 1, query_delimiter] = 1.0
        inputs = torch.cat([listed.flatten(1, 2), asked], dim=1)  # (b, t, w + 2)

        steps = inputs.shape[1]
        targets = torch.zeros(b, steps, self.output_size)
        targets[:, -n:] = answer
        mask = torch.zeros(b, steps, dtype=torch.bool)
        mask[:, -n:] = True
        return Batch(inputs, targets, mask)

    def _describe(self) -> dict[str, object]:
        return {"width": self.width, "item_length": self.item_length, **self.difficulty}
