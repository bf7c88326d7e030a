"""Memory-less models to compare the NTM against, with the same call signature."""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn


class LSTMBaseline(nn.Module):
    """A stacked LSTM (the paper's baseline): ``logits, state = model(x[, state])``.

    x (b, t, input_size) -> logits (b, t, output_size); state is (h, c), each
    (layers, b, hidden_size), starting from a learned value. `initial_state` accepts the NTM's
    `memory_slots` and ignores it, so experiments can swap the two.
    """

    def __init__(
        self, *, input_size: int, output_size: int, hidden_size: int = 256, num_layers: int = 3
    ) -> None:
        super().__init__()
        if min(input_size, output_size, hidden_size, num_layers) < 1:
            raise ValueError(
                "input_size, output_size, hidden_size and num_layers must all be >= 1, got "
                f"{input_size}, {output_size}, {hidden_size}, {num_layers}"
            )
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.output = nn.Linear(hidden_size, output_size)
        self.initial_h = nn.Parameter(torch.zeros(num_layers, hidden_size))
        self.initial_c = nn.Parameter(torch.zeros(num_layers, hidden_size))

    def initial_state(
        self,
        batch_size: int,
        *,
        memory_slots: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        h, c = (
            repeat(p.to(device=device, dtype=dtype), "l d -> l b d", b=batch_size).contiguous()
            for p in (self.initial_h, self.initial_c)
        )
        return h, c

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, *, return_trace: bool = False
    ):
        """x (b, t, input_size) -> logits (b, t, output_size), state[, None]: no trace."""
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        hidden, state = self.lstm(x, state)
        logits = self.output(hidden)
        return (logits, state, None) if return_trace else (logits, state)
