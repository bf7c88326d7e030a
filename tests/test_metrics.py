"""The task metrics (ntm/metrics.py) on hand-made outputs."""

import math

import pytest
import torch

from ntm.metrics import (
    bit_errors_per_position,
    bit_errors_per_sequence,
    cost_bits_per_sequence,
    masked_bce,
)

# Two sequences, three steps, two bits; only steps 1 and 2 are scored.
TARGETS = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])
MASK = torch.tensor([[False, True, True], [False, True, True]])


def test_bit_errors_count_wrong_bits_on_scored_steps_only():
    logits = torch.full_like(TARGETS, -5.0)  # predicts all zeros
    logits[0, 0] = 5.0  # wrong at an unscored step: must not count
    # sequence 0 scored targets [1,0],[0,1]: 2 wrong; sequence 1 [1,1],[0,0]: 2 wrong
    assert bit_errors_per_sequence(logits, TARGETS, MASK).item() == 2.0
    perfect = torch.where(TARGETS > 0.5, 5.0, -5.0)
    assert bit_errors_per_sequence(perfect, TARGETS, MASK).item() == 0.0


def test_cost_in_bits_per_sequence():
    logits = torch.zeros_like(TARGETS)  # p = 0.5 everywhere: exactly 1 bit per scored bit
    assert math.isclose(cost_bits_per_sequence(logits, TARGETS, MASK).item(), 4.0, rel_tol=1e-6)
    assert math.isclose(masked_bce(logits, TARGETS, MASK).item(), math.log(2), rel_tol=1e-6)
    confident = torch.where(TARGETS > 0.5, 20.0, -20.0)
    assert cost_bits_per_sequence(confident, TARGETS, MASK).item() < 1e-6


def test_bit_errors_per_position():
    logits = torch.full_like(TARGETS, -5.0)  # predicts all zeros
    # scored step 1: sequence 0 has 1 wrong bit, sequence 1 has 2; scored step 2: 1 and 0
    assert bit_errors_per_position(logits, TARGETS, MASK).tolist() == [1.5, 0.5]
    ragged = MASK.clone()
    ragged[1, 1] = False
    with pytest.raises(ValueError, match="same scored steps"):
        bit_errors_per_position(logits, TARGETS, ragged)
