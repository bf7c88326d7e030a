"""Read and write heads: one projection from the controller output to every head's parameters.

Axes: b batch, h heads, w word width, s shift offsets, d controller output width.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class Addressing(NamedTuple):
    """Addressing parameters of a group of heads (section 3.3), after their activations."""

    key: Tensor  # (b, h, w), unconstrained
    strength: Tensor  # (b, h), beta >= 0 (softplus)
    gate: Tensor  # (b, h), g in [0, 1] (sigmoid)
    shift_weights: Tensor  # (b, h, s), a distribution over offsets -k..k (softmax)
    gamma: Tensor  # (b, h), >= 1 (1 + softplus)


class HeadParameters(NamedTuple):
    addressing: Addressing  # h = read heads + write heads, read heads first
    erase: Tensor  # (b, h_write, w) in [0, 1] (sigmoid)
    add: Tensor  # (b, h_write, w), unconstrained


class Heads(nn.Module):
    """Maps a controller output (b, d) to the parameters of all read and write heads.

    Read and write heads share one `Addressing` (read heads first), so that all heads are
    addressed in one batched call.
    """

    def __init__(
        self,
        *,
        input_size: int,
        memory_width: int,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
    ) -> None:
        super().__init__()
        if read_heads < 1 or write_heads < 1:
            raise ValueError(
                f"an NTM needs at least one read and one write head, "
                f"got read_heads={read_heads}, write_heads={write_heads}"
            )
        if shift_range < 0:
            raise ValueError(f"shift_range must be >= 0, got {shift_range}")
        self.read_heads = read_heads
        self.write_heads = write_heads
        self.memory_width = memory_width
        self.shift_offsets = 2 * shift_range + 1
        # key, strength, gate, shift weights, gamma
        self._addressing_sizes = [memory_width, 1, 1, self.shift_offsets, 1]
        self._group_sizes = [
            (read_heads + write_heads) * sum(self._addressing_sizes),  # all heads' addressing
            write_heads * 2 * memory_width,  # erase and add vectors
        ]
        self.projection = nn.Linear(input_size, sum(self._group_sizes))

    def _addressing(self, raw: Tensor) -> Addressing:
        key, strength, gate, shift, gamma = raw.split(self._addressing_sizes, dim=-1)
        return Addressing(
            key=key,
            strength=F.softplus(strength.squeeze(-1)),
            gate=torch.sigmoid(gate.squeeze(-1)),
            shift_weights=torch.softmax(shift, dim=-1),
            gamma=1 + F.softplus(gamma.squeeze(-1)),
        )

    def forward(self, controller_output: Tensor) -> HeadParameters:
        """controller_output (b, d) -> parameters, in float32 or wider even under bf16 autocast."""
        raw = self.projection(controller_output)
        raw = raw.to(torch.promote_types(raw.dtype, torch.float32))
        addressing, erase_add = raw.split(self._group_sizes, dim=-1)
        addressing = rearrange(addressing, "b (h p) -> b h p", h=self.read_heads + self.write_heads)
        erase, add = rearrange(erase_add, "b (h p) -> b h p", h=self.write_heads).chunk(2, dim=-1)
        return HeadParameters(
            addressing=self._addressing(addressing), erase=torch.sigmoid(erase), add=add
        )
