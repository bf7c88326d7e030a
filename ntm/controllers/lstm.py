"""Stacked LSTM controller with a learned initial state."""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

from ntm.controllers.base import Controller, register


@register("lstm")
class LSTMController(Controller):
    """`num_layers` stacked LSTM cells; the output is the top layer's hidden state (b, hidden_size).

    State: a tuple (h, c), each (layers, b, hidden_size). The initial h and c are learned.
    """

    def __init__(self, *, input_size: int, hidden_size: int = 100, num_layers: int = 1) -> None:
        super().__init__()
        if hidden_size < 1 or num_layers < 1:
            raise ValueError(
                f"lstm controller needs hidden_size >= 1 and num_layers >= 1, "
                f"got hidden_size={hidden_size}, num_layers={num_layers}"
            )
        self.output_size = hidden_size
        self.cells = nn.ModuleList(
            nn.LSTMCell(input_size if i == 0 else hidden_size, hidden_size)
            for i in range(num_layers)
        )
        self.initial_h = nn.Parameter(torch.zeros(num_layers, hidden_size))
        self.initial_c = nn.Parameter(torch.zeros(num_layers, hidden_size))

    def initial_state(
        self, batch_size: int, *, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        h, c = (
            repeat(p.to(device=device, dtype=dtype), "l d -> l b d", b=batch_size).contiguous()
            for p in (self.initial_h, self.initial_c)
        )
        return h, c

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple]:
        hs, cs = [], []
        for layer, cell in enumerate(self.cells):
            h, c = cell(x, (state[0][layer], state[1][layer]))
            hs.append(h)
            cs.append(c)
            x = h
        return x, (torch.stack(hs), torch.stack(cs))
