"""Memory addressing of the Neural Turing Machine (Graves et al. 2014, section 3.3).

One pure function per mechanism, batched over batch and heads, composed by `address`:

    content_weights -> interpolate -> shift -> sharpen

Axes: b batch, h heads, n memory slots, w word width, s shift offsets (2k + 1 for offsets -k..k).
Every function works in the dtype it is given; the model calls them in float32 (see `NTMCell`).
Contractions are written as batched matmuls with their einsum pattern in a comment: on small CPU
tensors `einsum` costs several times a `bmm` in dispatch overhead, and this is the hot path.
"""

from __future__ import annotations

import torch
from torch import Tensor

NORM_EPS = 1e-8
"""The product of norms is floored here before dividing, so an all-zero key or memory row has
similarity 0 with anything, and finite gradients."""

SHARPEN_FLOOR = 1e-30
"""Weights are floored here (or at the dtype's smallest normal number, if larger: 1e-30 is 0 in
float16) before the log in `sharpen`, so that `w ** gamma` is never 0/0."""


def cosine_similarity(memory: Tensor, keys: Tensor) -> Tensor:
    """K[u, v] = u . v / (|u| |v|), eq. 6, between every key and every memory row.

    memory: (b, n, w); keys: (b, h, w) -> (b, h, n). Zero rows give similarity 0, not NaN.
    The norms divide the (b, h, n) dot products rather than normalising the (b, n, w) memory:
    one memory-sized tensor fewer to write and to keep for the backward pass.
    """
    dots = keys @ memory.transpose(1, 2)  # b h w, b n w -> b h n
    norms = keys.norm(dim=-1, keepdim=True) * memory.norm(dim=-1).unsqueeze(1)  # b h 1 * b 1 n
    return dots / norms.clamp_min(NORM_EPS)


def content_weights(memory: Tensor, keys: Tensor, strength: Tensor) -> Tensor:
    """Content-based addressing, eq. 5: w_c(i) = softmax_i(beta * K[k, M(i)]).

    memory: (b, n, w); keys: (b, h, w); strength beta >= 0: (b, h) -> weights (b, h, n).
    """
    return torch.softmax(strength.unsqueeze(-1) * cosine_similarity(memory, keys), dim=-1)


def interpolate(content: Tensor, previous: Tensor, gate: Tensor) -> Tensor:
    """Interpolation gate, eq. 7: w_g = g * w_c + (1 - g) * w_{t-1}.

    content, previous: (b, h, n); gate g in [0, 1]: (b, h) -> (b, h, n).
    """
    gate = gate.unsqueeze(-1)
    return gate * content + (1 - gate) * previous


def shift(weights: Tensor, shift_weights: Tensor) -> Tensor:
    """Circular convolution with the shift weighting, eq. 8: w~(i) = sum_j w(j) s(i - j).

    weights: (b, h, n); shift_weights: (b, h, s) over offsets -k..k, s = 2k + 1, summing to 1
    -> (b, h, n). Offset d moves mass from slot i to slot i + d (mod n). Only the 2k + 1 allowed
    offsets are computed (a roll per offset), instead of a full n-point convolution.
    """
    offsets = shift_weights.shape[-1]
    if offsets % 2 != 1:
        raise ValueError(f"shift weighting needs an odd number of offsets (-k..k), got {offsets}")
    k = offsets // 2
    # shifted[..., i, o] = w(i - d_o) for the o-th offset d_o = o - k
    shifted = torch.stack([weights.roll(d, dims=-1) for d in range(-k, k + 1)], dim=-1)
    return (shifted @ shift_weights.unsqueeze(-1)).squeeze(-1)  # b h n s, b h s -> b h n


def sharpen(weights: Tensor, gamma: Tensor) -> Tensor:
    """Sharpening, eq. 9: w(i) = w~(i)^gamma / sum_j w~(j)^gamma.

    weights: (b, h, n); gamma >= 1: (b, h) -> (b, h, n). Computed as a softmax of
    gamma * log(w~) with w~ floored at SHARPEN_FLOOR: the same value, but a huge gamma or a
    weighting with zeros gives a one-hot, not 0/0.
    """
    floor = max(SHARPEN_FLOOR, torch.finfo(weights.dtype).tiny)
    logits = gamma.unsqueeze(-1) * torch.log(weights.clamp_min(floor))
    return torch.softmax(logits, dim=-1)


def address(
    memory: Tensor,
    previous: Tensor,
    *,
    key: Tensor,
    strength: Tensor,
    gate: Tensor,
    shift_weights: Tensor,
    gamma: Tensor,
) -> Tensor:
    """The whole addressing pipeline of figure 2 (eq. 5-9) for all heads at once.

    memory: (b, n, w); previous weights: (b, h, n); key: (b, h, w); strength, gate, gamma: (b, h);
    shift_weights: (b, h, s) -> new weights (b, h, n).
    """
    weights = content_weights(memory, key, strength)
    weights = interpolate(weights, previous, gate)
    weights = shift(weights, shift_weights)
    return sharpen(weights, gamma)
