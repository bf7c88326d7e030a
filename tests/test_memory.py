"""Memory read, erase/add write and initialisation (ntm/memory.py)."""

import pytest
import torch

from ntm.memory import MemoryInit, read, write


def test_read_hand_computed():
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    weights = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])
    torch.testing.assert_close(read(memory, weights), torch.tensor([[[2.0, 3.0], [5.0, 6.0]]]))


def test_write_hand_computed():
    memory = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])
    weights = torch.tensor([[[1.0, 0.5]]])
    erase = torch.tensor([[[1.0, 0.0]]])
    add = torch.tensor([[[10.0, 20.0]]])
    # row 0: [1*(1-1), 1*(1-0)] + [10, 20]; row 1: [2*(1-0.5), 2] + [5, 10]
    expected = torch.tensor([[[10.0, 21.0], [6.0, 12.0]]])
    torch.testing.assert_close(write(memory, weights, erase, add), expected)


def reference_write(memory, weights, erase, add):
    """Per sample, per head, literally eq. 3-4: all erasures multiply, then all additions sum."""
    out = memory.clone()
    for b in range(memory.shape[0]):
        for h in range(weights.shape[1]):
            out[b] = out[b] * (1 - torch.outer(weights[b, h], erase[b, h]))
        for h in range(weights.shape[1]):
            out[b] = out[b] + torch.outer(weights[b, h], add[b, h])
    return out


@pytest.mark.parametrize(("batch", "heads"), [(1, 1), (3, 1), (2, 3)])
def test_write_matches_reference(batch, heads):
    memory = torch.randn(batch, 7, 5)
    weights = torch.softmax(torch.randn(batch, heads, 7), -1)
    erase, add = torch.rand(batch, heads, 5), torch.randn(batch, heads, 5)
    torch.testing.assert_close(
        write(memory, weights, erase, add), reference_write(memory, weights, erase, add)
    )


def test_write_does_not_depend_on_head_order():
    memory = torch.randn(2, 6, 4)
    weights = torch.softmax(torch.randn(2, 3, 6), -1)
    erase, add = torch.rand(2, 3, 4), torch.randn(2, 3, 4)
    order = torch.tensor([2, 0, 1])
    torch.testing.assert_close(
        write(memory, weights, erase, add),
        write(memory, weights[:, order], erase[:, order], add[:, order]),
    )


def test_read_and_write_gradcheck():
    memory = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.softmax(torch.randn(2, 2, 5, dtype=torch.float64), -1).requires_grad_(True)
    erase = torch.rand(2, 2, 3, dtype=torch.float64, requires_grad=True)
    add = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(read, (memory, weights))
    assert torch.autograd.gradcheck(write, (memory, weights, erase, add))


@pytest.mark.parametrize("kind", ["constant", "random", "learned"])
def test_memory_init_any_size(kind):
    init = MemoryInit(width=4, init=kind, value=0.01)
    for slots in (8, 32):
        memory = init(3, slots, device=torch.device("cpu"), dtype=torch.float32)
        assert memory.shape == (3, slots, 4)
        assert memory.abs().max() <= 0.01 + 1e-7
    if kind == "constant":
        assert (memory == 0.01).all()
    if kind == "learned":
        assert [p.shape for p in init.parameters()] == [torch.Size([4])]
    else:
        assert list(init.parameters()) == []


@pytest.mark.parametrize("kind", ["constant", "random", "learned"])
def test_memory_init_is_made_on_the_device_asked_for(kind):
    memory = MemoryInit(width=4, init=kind)(2, 8, device=torch.device("meta"), dtype=torch.float64)
    assert memory.device.type == "meta" and memory.dtype == torch.float64


def test_memory_init_rejects_unknown_kind():
    with pytest.raises(ValueError, match="constant"):
        MemoryInit(width=4, init="zeros")
