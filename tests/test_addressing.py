"""Addressing (ntm/addressing.py): hand-computed values, a per-sample reference loop, gradients."""

import math

import pytest
import torch

from ntm.addressing import address, content_weights, interpolate, sharpen, shift


def test_content_weights_hand_computed():
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # (1, 3, 2)
    key = torch.tensor([[[2.0, 0.0]]])  # points along row 0
    weights = content_weights(memory, key, torch.tensor([[1.0]]))
    similarities = torch.tensor([1.0, 0.0, 1 / math.sqrt(2)])
    expected = similarities.exp() / similarities.exp().sum()
    torch.testing.assert_close(weights[0, 0], expected)


def test_content_weights_large_strength_selects_the_matching_row():
    memory = torch.randn(2, 16, 5)
    keys = memory[:, [3, 11]]  # head 0 looks for row 3, head 1 for row 11
    weights = content_weights(memory, keys, torch.full((2, 2), 1e3))
    assert weights.argmax(-1).tolist() == [[3, 11], [3, 11]]
    torch.testing.assert_close(weights.amax(-1), torch.ones(2, 2))


def test_content_weights_zero_strength_is_uniform():
    weights = content_weights(torch.randn(1, 4, 3), torch.randn(1, 1, 3), torch.zeros(1, 1))
    torch.testing.assert_close(weights, torch.full((1, 1, 4), 0.25))


def test_interpolate():
    content = torch.tensor([[[1.0, 0.0, 0.0]]])
    previous = torch.tensor([[[0.0, 0.0, 1.0]]])
    torch.testing.assert_close(interpolate(content, previous, torch.tensor([[0.0]])), previous)
    torch.testing.assert_close(interpolate(content, previous, torch.tensor([[1.0]])), content)
    torch.testing.assert_close(
        interpolate(content, previous, torch.tensor([[0.25]])),
        torch.tensor([[[0.25, 0.0, 0.75]]]),
    )


def test_one_hot_shift_moves_the_weighting_by_one_slot_with_wraparound():
    weights = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])
    forward = torch.tensor([[[0.0, 0.0, 1.0]]])  # offsets -1, 0, +1
    backward = torch.tensor([[[1.0, 0.0, 0.0]]])
    stay = torch.tensor([[[0.0, 1.0, 0.0]]])
    torch.testing.assert_close(shift(weights, forward), torch.tensor([[[0.4, 0.1, 0.2, 0.3]]]))
    torch.testing.assert_close(shift(weights, backward), torch.tensor([[[0.2, 0.3, 0.4, 0.1]]]))
    torch.testing.assert_close(shift(weights, stay), weights)


def test_shift_mixes_offsets_and_supports_wider_ranges():
    weights = torch.tensor([[[1.0, 0.0, 0.0, 0.0, 0.0]]])
    half_back_half_forward = torch.tensor([[[0.5, 0.0, 0.5]]])
    torch.testing.assert_close(
        shift(weights, half_back_half_forward), torch.tensor([[[0.0, 0.5, 0.0, 0.0, 0.5]]])
    )
    two_forward = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 1.0]]])  # offsets -2..2
    torch.testing.assert_close(
        shift(weights, two_forward), torch.tensor([[[0.0, 0.0, 1.0, 0.0, 0.0]]])
    )


def test_shift_rejects_an_even_number_of_offsets():
    with pytest.raises(ValueError, match="odd"):
        shift(torch.rand(1, 1, 4), torch.rand(1, 1, 2))


def test_sharpen():
    weights = torch.tensor([[[0.2, 0.8]]])
    torch.testing.assert_close(
        sharpen(weights, torch.tensor([[2.0]])), torch.tensor([[[0.04, 0.64]]]) / 0.68
    )
    torch.testing.assert_close(sharpen(weights, torch.tensor([[1.0]])), weights)
    torch.testing.assert_close(
        sharpen(torch.tensor([[[0.3, 0.4, 0.3]]]), torch.tensor([[500.0]])),
        torch.tensor([[[0.0, 1.0, 0.0]]]),
    )


def test_sharpen_gives_finite_gradients_in_float16_on_a_weighting_with_zeros():
    """The floor is 0 in float16 if taken as 1e-30: log(0) and a NaN gradient."""
    weights = torch.tensor([[[0.25, 0.75, 0.0, 0.0]]], dtype=torch.float16, requires_grad=True)
    sharpen(weights, torch.tensor([[2.0]], dtype=torch.float16))[..., 1].sum().backward()
    assert torch.isfinite(weights.grad).all()


# A plain reference: one sample and one head at a time, each equation written out literally.
def reference_address(memory, previous, key, strength, gate, shift_weights, gamma):
    batch, heads, slots = previous.shape
    k = shift_weights.shape[-1] // 2
    out = torch.zeros_like(previous)
    for b in range(batch):
        for h in range(heads):
            similarity = torch.stack(
                [
                    torch.dot(key[b, h], memory[b, i]) / (key[b, h].norm() * memory[b, i].norm())
                    for i in range(slots)
                ]
            )
            content = torch.softmax(strength[b, h] * similarity, dim=0)
            gated = gate[b, h] * content + (1 - gate[b, h]) * previous[b, h]
            shifted = torch.zeros(slots, dtype=memory.dtype)
            for i in range(slots):
                for j in range(slots):
                    offset = (i - j) % slots  # eq. 8: s(i - j), offsets taken modulo n
                    if offset <= k:
                        shifted[i] += gated[j] * shift_weights[b, h, k + offset]
                    elif offset >= slots - k:
                        shifted[i] += gated[j] * shift_weights[b, h, k + offset - slots]
            powered = shifted ** gamma[b, h]
            out[b, h] = powered / powered.sum()
    return out


def random_addressing(batch, heads, slots, width, k, dtype=torch.float64):
    return dict(
        memory=torch.randn(batch, slots, width, dtype=dtype),
        previous=torch.softmax(torch.randn(batch, heads, slots, dtype=dtype), -1),
        key=torch.randn(batch, heads, width, dtype=dtype),
        strength=torch.rand(batch, heads, dtype=dtype) * 5,
        gate=torch.rand(batch, heads, dtype=dtype),
        shift_weights=torch.softmax(torch.randn(batch, heads, 2 * k + 1, dtype=dtype), -1),
        gamma=1 + torch.rand(batch, heads, dtype=dtype) * 3,
    )


@pytest.mark.parametrize(
    ("batch", "heads", "k"), [(1, 1, 1), (3, 2, 1), (2, 3, 0), (4, 1, 2), (2, 2, 3)]
)
def test_batched_address_matches_per_sample_reference(batch, heads, k):
    inputs = random_addressing(batch, heads, slots=9, width=4, k=k)
    expected = reference_address(**inputs)
    memory, previous = inputs.pop("memory"), inputs.pop("previous")
    torch.testing.assert_close(address(memory, previous, **inputs), expected)


def test_address_gradcheck():
    inputs = random_addressing(2, 2, slots=6, width=3, k=1)
    for value in inputs.values():
        value.requires_grad_(True)
    names = list(inputs)

    def run(*args):
        kwargs = dict(zip(names, args, strict=True))
        return address(kwargs.pop("memory"), kwargs.pop("previous"), **kwargs)

    assert torch.autograd.gradcheck(run, tuple(inputs.values()))


def test_finite_values_and_gradients_on_degenerate_inputs():
    """All-zero memory, zero keys, huge strength and sharpening: no NaN or inf anywhere; then
    nonzero memory and keys with the same huge strength (a saturated softmax)."""
    previous = torch.zeros(2, 2, 8)
    previous[..., 0] = 1
    for memory, key in [
        (torch.zeros(2, 8, 4), torch.zeros(2, 2, 4)),
        (torch.randn(2, 8, 4), torch.randn(2, 2, 4)),
    ]:
        inputs = {
            "memory": memory.requires_grad_(True),
            "key": key.requires_grad_(True),
            "strength": torch.full((2, 2), 1e6, requires_grad=True),
            "gamma": torch.full((2, 2), 1e6, requires_grad=True),
            "gate": torch.full((2, 2), 0.5, requires_grad=True),
            "shift_weights": torch.tensor([0.0, 1.0, 0.0]).repeat(2, 2, 1).requires_grad_(True),
        }
        weights = address(previous=previous, **inputs)
        assert torch.isfinite(weights).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2))
        (weights * torch.randn_like(weights)).sum().backward()
        for name, tensor in inputs.items():
            assert torch.isfinite(tensor.grad).all(), name
