"""The paper's task metrics, over the scored (masked) steps of each sequence.

Axes: b batch, t time, o output bits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_bce(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Training loss: binary cross-entropy (nats) averaged over the scored bits.

    logits, targets: (b, t, o); mask: (b, t) bool.
    """
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    # A weighted sum, not losses[mask]: boolean indexing has a data-dependent shape, which
    # makes the host wait for the device.
    scored = mask.unsqueeze(-1).to(losses.dtype)
    return (losses * scored).sum() / (scored.sum() * losses.shape[-1]).clamp_min(1)


def bit_errors_per_sequence(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Wrong bits per sequence: outputs thresholded at 0.5 (logit 0), wrong bits summed over a
    sequence's scored steps, mean over sequences. logits, targets: (b, t, o); mask: (b, t)."""
    wrong = ((logits > 0) != (targets > 0.5)) & mask.unsqueeze(-1)
    return wrong.sum(dim=(1, 2)).float().mean()


def cost_bits_per_sequence(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """The paper's learning-curve cost: cross-entropy in bits summed over a sequence's scored
    steps and bits, mean over sequences. logits, targets: (b, t, o); mask: (b, t)."""
    nats = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return (nats * mask.unsqueeze(-1)).sum(dim=(1, 2)).mean() / math.log(2)


def bit_errors_per_position(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Wrong bits at each scored position, mean over sequences: where in its answer a model
    fails (e.g. only after the first repetition of a repeat copy). Every sequence must have the
    same mask (a batch of one difficulty). logits, targets: (b, t, o); mask: (b, t) ->
    (scored positions,)."""
    if not torch.equal(mask, mask[:1].expand_as(mask)):
        raise ValueError("bit_errors_per_position needs the same scored steps in every sequence")
    wrong = ((logits > 0) != (targets > 0.5)).sum(dim=-1)  # (b, t)
    return wrong[:, mask[0]].float().mean(dim=0)


# Conversion: a student trained on a teacher's outputs (README "Conversion").


def soft_target_bce(
    logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float = 1.0
) -> Tensor:
    """The student's loss: binary cross-entropy (nats, mean over scored bits) against the
    teacher's output probabilities, both softened by `temperature` T:
    ``T² · BCE(σ(logits / T), σ(teacher_logits / T))``. At T = 1 it is the plain cross-entropy
    against the teacher's probabilities; a higher T passes on more of the teacher's
    uncertainty, and T² keeps the gradient's scale (Hinton et al. 2015). Its minimum is the
    teacher's entropy, not 0. logits, teacher_logits: (b, t, o); mask: (b, t)."""
    soft_targets = torch.sigmoid(teacher_logits.float() / temperature)
    return temperature**2 * masked_bce(logits / temperature, soft_targets, mask)


def agreement(logits: Tensor, other_logits: Tensor, mask: Tensor) -> Tensor:
    """Fraction of scored output bits on which two models agree, outputs thresholded at 0.5
    (logit 0). logits, other_logits: (b, t, o); mask: (b, t)."""
    same = ((logits > 0) == (other_logits > 0)) & mask.unsqueeze(-1)
    return same.sum().float() / (mask.sum() * logits.shape[-1]).clamp_min(1)


def exact_agreement(logits: Tensor, other_logits: Tensor, mask: Tensor) -> Tensor:
    """Fraction of sequences on whose every scored bit two models agree (thresholded).
    logits, other_logits: (b, t, o); mask: (b, t)."""
    differ = ((logits > 0) != (other_logits > 0)) & mask.unsqueeze(-1)
    return (differ.sum(dim=(1, 2)) == 0).float().mean()
