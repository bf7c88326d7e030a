"""Feed-forward controller: no state of its own, so the memory is its only recurrence."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ntm.controllers.base import Controller, register


@register("mlp")
class MLPController(Controller):
    """`num_layers` Linear + ReLU layers of width `hidden_size`: the paper's feed-forward net.

    State: an empty tuple.
    """

    def __init__(self, *, input_size: int, hidden_size: int = 100, num_layers: int = 1) -> None:
        super().__init__()
        if hidden_size < 1 or num_layers < 1:
            raise ValueError(
                f"mlp controller needs hidden_size >= 1 and num_layers >= 1, "
                f"got hidden_size={hidden_size}, num_layers={num_layers}"
            )
        self.output_size = hidden_size
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Linear(input_size if i == 0 else hidden_size, hidden_size), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def initial_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> tuple:
        return ()

    def forward(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        return self.net(x), state
