"""Reading and writing an NTM memory (Graves et al. 2014, section 3.1-3.2), and its initial value.

Axes: b batch, h heads, n memory slots, w word width. Contractions are batched matmuls with
their einsum pattern in a comment (cheaper than `einsum` on small tensors; see addressing.py).
"""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

MEMORY_INITS = ("constant", "random", "learned")


def read(memory: Tensor, weights: Tensor) -> Tensor:
    """Read vectors, eq. 2: r = sum_i w(i) M(i).

    memory: (b, n, w); weights: (b, h, n) -> reads (b, h, w).
    """
    return weights @ memory  # b h n, b n w -> b h w


def write(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """Erase then add, eq. 3-4, for any number of write heads.

    memory: (b, n, w); weights: (b, h, n); erase in [0, 1] and add: (b, h, w) -> memory (b, n, w).
    With several heads the erasures multiply and the additions sum, so the result does not
    depend on the order of the heads (as the paper notes).
    """
    added = weights.transpose(1, 2) @ add  # b h n, b h w -> b n w
    if weights.shape[1] == 1:  # one head, the common case: skip the product (a slow kernel)
        keep = 1 - weights.transpose(1, 2) * erase  # b 1 n, b 1 w -> b n w
    else:
        keep = (1 - weights.unsqueeze(-1) * erase.unsqueeze(-2)).prod(dim=1)  # b h n w -> b n w
    return memory * keep + added


class MemoryInit(nn.Module):
    """The memory's value at the start of a sequence, for any number of slots.

    `init` (Collier & Beel 2018 compare them; `constant` trained fastest and most stably):
    - ``constant``: every entry `value`.
    - ``random``: entries uniform in [-value, value], drawn afresh for each call (each
      `initial_state`).
    - ``learned``: one learned word, the same in every slot (so its shape does not depend on n
      and a model trained with 128 slots runs with 256).
    """

    def __init__(self, *, width: int, init: str = "constant", value: float = 1e-6) -> None:
        super().__init__()
        if init not in MEMORY_INITS:
            raise ValueError(f"unknown memory init {init!r}; choose one of {MEMORY_INITS}")
        self.width = width
        self.init = init
        self.value = value
        self.word = nn.Parameter(torch.full((width,), value)) if init == "learned" else None

    def forward(
        self, batch_size: int, slots: int, *, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """-> memory (b, n, w)."""
        shape = (batch_size, slots, self.width)
        if self.init == "constant":
            return torch.full(shape, self.value, device=device, dtype=dtype)
        if self.init == "random":
            return (2 * torch.rand(shape, device=device, dtype=dtype) - 1) * self.value
        return repeat(self.word.to(device=device, dtype=dtype), "w -> b n w", b=batch_size, n=slots)
