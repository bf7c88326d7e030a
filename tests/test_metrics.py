"""The task metrics (ntm/metrics.py) on hand-made outputs."""

import functools
import math

import pytest
import torch

from ntm.metrics import (
    agreement,
    bit_errors_per_position,
    bit_errors_per_sequence,
    cost_bits_per_sequence,
    exact_agreement,
    masked_bce,
    soft_target_bce,
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


def test_agreement_counts_scored_bits_and_whole_sequences():
    teacher = torch.tensor([[[5.0, -5.0], [5.0, -5.0], [-5.0, 5.0]]] * 2)
    student = teacher.clone()
    student[0, 0] = -teacher[0, 0]  # disagrees on an unscored step: does not count
    student[1, 2, 1] = -3.0  # one scored bit of sequence 1 differs
    student[1, 1, 0] = 0.5  # the same side of 0.5 as the teacher's 5: agrees
    assert agreement(student, teacher, MASK).item() == 7 / 8
    assert exact_agreement(student, teacher, MASK).item() == 1 / 2
    assert agreement(teacher, teacher, MASK).item() == 1.0
    assert exact_agreement(-teacher, teacher, MASK).item() == 0.0


def test_soft_target_loss_by_hand():
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss = functools.partial(soft_target_bce, mask=mask)
    # The teacher at p = 0.5, the student at logit 0: ln 2 at any temperature T (times T²).
    zero = torch.zeros(1, 1, 1)
    assert math.isclose(loss(zero, zero).item(), math.log(2), rel_tol=1e-6)
    # Student logit 2 at T = 2 is logit 1 against p = 0.5: T² · (softplus(1) + softplus(-1)) / 2.
    expected = 4 * (math.log1p(math.e) + math.log1p(1 / math.e)) / 2
    assert math.isclose(
        loss(torch.full((1, 1, 1), 2.0), torch.zeros(1, 1, 1), temperature=2.0).item(),
        expected,
        rel_tol=1e-6,
    )
    # At T = 1 it is the cross-entropy against the teacher's probabilities, and its gradient
    # vanishes where the student says what the teacher says.
    teacher = torch.tensor([[[1.5, -0.5]]])
    student = teacher.clone().requires_grad_()
    value = soft_target_bce(student, teacher, mask)
    assert torch.allclose(value, masked_bce(teacher, torch.sigmoid(teacher), mask))
    value.backward()
    assert student.grad.abs().max() < 1e-7
