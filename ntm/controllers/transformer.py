"""Causal Transformer controller, run one step at a time with a key/value cache.

At step t it attends over its own inputs of steps 0..t; the cache holds every layer's keys and
values of the earlier steps, so a step costs O(t) instead of a re-run of the prefix.

Axes: b batch, l layers, a attention heads, t/u query/key positions, e per-head width, d width.
"""

from __future__ import annotations

import math

import torch
from einops import einsum, rearrange
from torch import Tensor, nn

from ntm.controllers.base import Controller, register

POSITIONAL_ENCODINGS = ("none", "alibi", "sinusoidal")


def alibi_slopes(heads: int) -> Tensor:
    """Per-head slopes of ALiBi (Press et al. 2022): the geometric sequence 2^(-8 i / heads)."""
    return torch.tensor([2.0 ** (-8.0 * (i + 1) / heads) for i in range(heads)])


def sinusoidal_encoding(positions: Tensor, width: int) -> Tensor:
    """positions (t,) -> (t, width): the sine/cosine encoding of Vaswani et al. 2017."""
    frequencies = torch.exp(
        torch.arange(0, width, 2, device=positions.device, dtype=torch.float32)
        * (-math.log(10_000.0) / width)
    )
    angles = positions.float()[:, None] * frequencies
    encoding = torch.zeros(len(positions), width, device=positions.device)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles[:, : width // 2])
    return encoding


class Block(nn.Module):
    """Pre-norm Transformer block: causal self-attention then a feed-forward layer."""

    def __init__(self, *, width: int, heads: int, ff_size: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attention_out = nn.Linear(width, width)
        self.ff = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, ff_size), nn.GELU(), nn.Linear(ff_size, width)
        )

    def forward(
        self, x: Tensor, past_keys: Tensor, past_values: Tensor, bias: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (b, t, d) at the last t positions; past keys/values (b, a, u - t, e); bias (a, t, u)
        with -inf where a query may not look -> x (b, t, d), keys and values (b, a, u, e)."""
        q, k, v = (
            rearrange(p, "b t (a e) -> b a t e", a=self.heads)
            for p in self.qkv(self.attention_norm(x)).chunk(3, dim=-1)
        )
        keys = torch.cat([past_keys, k], dim=2)
        values = torch.cat([past_values, v], dim=2)
        scores = einsum(q, keys, "b a t e, b a u e -> b a t u") / math.sqrt(q.shape[-1])
        # Scores plus the float32 bias in float32 (in a bf16 model, too), then back to v's dtype.
        attention = torch.softmax(scores.float() + bias, dim=-1).to(values.dtype)
        mixed = einsum(attention, values, "b a t u, b a u e -> b a t e")
        x = x + self.attention_out(rearrange(mixed, "b a t e -> b t (a e)"))
        return x + self.ff(x), keys, values


@register("transformer")
class TransformerController(Controller):
    """A stack of causal pre-norm Transformer blocks over the controller's own past inputs.

    positional: ``none`` (causal attention alone tells order apart), ``alibi`` (a distance
    penalty per head, for length generalisation) or ``sinusoidal`` (absolute positions).
    window: if set, each step attends to itself and the ``window - 1`` steps before it only
    (local attention), so whatever lies further back must come through the NTM memory; the
    cache still keeps every step (sinusoidal positions are absolute), masked by the bias.
    ff_size defaults to twice the width, keeping one layer near the LSTM controller's size.
    State: (keys, values), each (l, b, a, t, e) for the t steps seen so far.
    """

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int = 100,
        num_layers: int = 1,
        num_heads: int = 4,
        ff_size: int | None = None,
        positional: str = "alibi",
        window: int | None = None,
    ) -> None:
        super().__init__()
        if positional not in POSITIONAL_ENCODINGS:
            raise ValueError(
                f"unknown positional encoding {positional!r}; choose one of {POSITIONAL_ENCODINGS}"
            )
        if num_heads < 1 or hidden_size % num_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads})"
            )
        if window is not None and window < 1:
            raise ValueError(f"attention window must be >= 1 step (or None for all), got {window}")
        if num_layers < 1:
            raise ValueError(f"transformer controller needs num_layers >= 1, got {num_layers}")
        self.output_size = hidden_size
        self.num_heads = num_heads
        self.head_width = hidden_size // num_heads
        self.positional = positional
        self.window = window
        self.embed = nn.Linear(input_size, hidden_size)
        self.blocks = nn.ModuleList(
            Block(width=hidden_size, heads=num_heads, ff_size=ff_size or 2 * hidden_size)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def initial_state(
        self, batch_size: int, *, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        shape = (len(self.blocks), batch_size, self.num_heads, 0, self.head_width)
        empty = torch.zeros(shape, device=device, dtype=dtype)
        return empty, empty

    def _bias(self, queries: Tensor, keys: Tensor) -> Tensor:
        """Attention bias (a, t, u) for query positions (t,) and key positions (u,)."""
        distance = (queries[:, None] - keys[None, :]).float()
        hidden = distance < 0  # the future
        if self.window is not None:
            hidden = hidden | (distance >= self.window)
        bias = torch.zeros_like(distance).masked_fill(hidden, float("-inf"))
        if self.positional == "alibi":
            bias = bias - self.slopes[:, None, None] * distance
        return bias.expand(self.num_heads, -1, -1)

    def _run(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple]:
        """x (b, t, input_size) at the positions after the cached ones -> (b, t, d), state."""
        past_keys, past_values = state
        start, steps = past_keys.shape[3], x.shape[1]
        key_positions = torch.arange(start + steps, device=x.device)
        query_positions = key_positions[start:]
        h = self.embed(x)
        if self.positional == "sinusoidal":
            h = h + sinusoidal_encoding(query_positions, h.shape[-1]).to(h.dtype)
        bias = self._bias(query_positions, key_positions)
        keys, values = [], []
        for layer, block in enumerate(self.blocks):
            h, k, v = block(h, past_keys[layer], past_values[layer], bias)
            keys.append(k)
            values.append(v)
        return self.norm(h), (torch.stack(keys), torch.stack(values))

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple]:
        """One step: x (b, input_size) -> output (b, hidden_size), state with one more step."""
        output, state = self._run(x[:, None], state)
        return output[:, 0], state

    def forward_sequence(self, x: Tensor) -> Tensor:
        """A full causal pass over x (b, t, input_size) -> (b, t, hidden_size), from no cache."""
        state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        return self._run(x, state)[0]
