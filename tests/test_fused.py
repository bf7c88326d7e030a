"""The fused whole-sequence NTM (ntm/fused): the same function and gradients as stepping the
cell, gradcheck of its hand-written backward, degenerate inputs, and the fall-backs."""

import ctypes
import warnings

import pytest
import test_model
import torch

from ntm import fused

if not fused.available():
    pytest.skip("the fused library cannot be built here (no C++ compiler)", allow_module_level=True)


def require_blas() -> None:
    """Skips where PyTorch exports no usable BLAS gemm; where it links MKL, that is a bug."""
    if fused._blas_gemm(torch.float64) is None or fused._blas_gemm(torch.float32) is None:
        assert not torch.backends.mkl.is_available(), "MKL is linked, its gemm not found"
        pytest.skip("this PyTorch build exports no usable BLAS gemm (sgemm_, dgemm_)")


@pytest.fixture(params=["own products", "blas products"])
def products(request, monkeypatch):
    """Each test twice: the controller's and heads' products written in sequence.cpp, and
    those of PyTorch's BLAS (ntm.fused.BLAS_MIN_BATCH, lowered here to every batch size)."""
    if request.param == "blas products":
        require_blas()
        monkeypatch.setattr(fused, "BLAS_MIN_BATCH", 1)
    else:
        monkeypatch.setattr(fused, "BLAS_MIN_BATCH", 2**62)
    return request.param


def small_ntm(controller="lstm", dtype=torch.float64, **kwargs):
    """test_model's small NTM in `dtype`, with weights larger than the default initialisation
    so that every path matters."""
    model = test_model.small_ntm(controller, **kwargs).to(dtype)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    return model


def loss_of(logits, state):
    """Uses every output, the final state included, so every gradient path is checked."""
    weights = torch.linspace(0, 1, state.weights.shape[-1], dtype=logits.dtype)
    total = logits.square().sum() + (state.memory * 0.3).sum() + (state.weights * weights).sum()
    total = total + state.reads.sum()
    return total + sum(part.sum() for part in state.controller)


@pytest.mark.parametrize(
    "controller, options",
    [
        ("lstm", {}),
        ("mlp", {}),
        ("lstm", {"read_heads": 2, "shift_range": 2}),
        ("mlp", {"read_heads": 3, "shift_range": 0}),
        ("lstm", {"memory_init": "learned"}),
    ],
)
def test_values_and_gradients_equal_the_stepped_cell(controller, options, products):
    model = small_ntm(controller, **options)
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    parameters = list(model.parameters())

    # fused=False: the cell, step by step. (A state each: a learned one is part of the graph.)
    expected_logits, expected_state = model(x, model.initial_state(3))
    expected_grads = torch.autograd.grad(loss_of(expected_logits, expected_state), parameters)
    logits, final = fused.run(model.cell, x, model.initial_state(3))
    grads = torch.autograd.grad(loss_of(logits, final), parameters)

    torch.testing.assert_close(logits, expected_logits, rtol=1e-10, atol=1e-10)
    for got, expected in zip(final, expected_state, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    for (name, _), got, expected in zip(
        model.named_parameters(), grads, expected_grads, strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("controller", ["lstm", "mlp"])
def test_gradcheck_of_the_hand_written_backward(controller, products):
    """Every input of the autograd function, every output (the final state's too), float64."""
    torch.manual_seed(0)
    lstm = controller == "lstm"
    steps, batch, width, slots, word, read_heads, shifts = 3, 2, 4, 5, 3, 2, 3
    gates = 4 * width if lstm else width
    heads = read_heads + 1
    params = heads * (word + 3 + shifts) + 2 * word

    def tensor(*shape, scale=1.0, grad=True):
        value = scale * torch.randn(*shape, dtype=torch.float64)
        return value.requires_grad_(grad)

    inputs = (
        tensor(steps, batch, gates),
        tensor(gates, read_heads * word, scale=0.5),
        tensor(gates, width, scale=0.5) if lstm else torch.zeros(0, 0, dtype=torch.float64),
        tensor(params, width, scale=0.5),
        tensor(params),
        tensor(batch, word, slots),  # the memory, word-major
        torch.softmax(torch.randn(batch, heads, slots, dtype=torch.float64), -1).requires_grad_(),
        tensor(batch, read_heads * word),
        tensor(batch, width, grad=lstm),
        tensor(batch, width, grad=lstm),
    )
    kind = fused.LSTM if lstm else fused.MLP

    def function(*args):
        outputs = fused.FusedSequence.apply(kind, read_heads, *args)
        return outputs if lstm else outputs[:4]  # the MLP has no cell state

    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("controller", ["lstm", "mlp"])
def test_gradients_are_finite_on_degenerate_memory(controller, products):
    """An all-zero memory and all-zero keys (the norms' floor), and weightings with exact zeros
    (the log's floor in sharpening): finite gradients, and the stepped cell's."""
    model = small_ntm(controller, memory_init="constant", memory_init_value=0)
    with torch.no_grad():
        model.cell.heads.projection.weight.zero_()
        model.cell.heads.projection.bias.zero_()
    x = torch.zeros(2, 6, 5, dtype=torch.float64)
    parameters = list(model.parameters())
    grads = torch.autograd.grad(
        loss_of(*fused.run(model.cell, x, model.initial_state(2))), parameters
    )
    expected = torch.autograd.grad(loss_of(*model(x, model.initial_state(2))), parameters)
    for (name, _), got, want in zip(model.named_parameters(), grads, expected, strict=True):
        assert torch.isfinite(got).all(), name
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10, msg=name)


def test_blas_products_are_called_from_the_threshold_batch_on(monkeypatch):
    """A counting stand-in for the gemm, which forwards to the real one: the C++ calls it
    (three products a step each way for the LSTM), and only from BLAS_MIN_BATCH on."""
    require_blas()
    gemm = fused._blas_gemm(torch.float32)
    signature = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)
    real, calls = signature(gemm), []

    def counting(*args):
        calls.append(1)
        real(*args)

    stand_in = signature(counting)  # kept alive here for the calls below
    monkeypatch.setattr(
        fused, "_blas_gemm", lambda dtype: ctypes.cast(stand_in, ctypes.c_void_p).value
    )
    model = small_ntm(dtype=torch.float32, fused=True)
    steps, threshold = 5, fused.BLAS_MIN_BATCH
    model(torch.rand(threshold - 1, steps, 5))[0].sum().backward()
    assert calls == []
    logits = model(torch.rand(threshold, steps, 5))[0]
    assert len(calls) == 3 * steps
    logits.sum().backward()
    assert len(calls) == 6 * steps
    assert fused._gemm_for(torch.float32, threshold, 2**31) is None  # too large for its ints


def test_inconsistent_sizes_are_refused_before_the_cpp_code_sees_them():
    model = small_ntm()
    state = model.initial_state(2)
    with pytest.raises(ValueError, match="memory0 has shape"):  # (b, n, w) where (b, w, n) goes
        fused.FusedSequence.apply(
            fused.LSTM, 1, torch.zeros(4, 2, 64, dtype=torch.float64),
            model.cell.controller.cells[0].weight_ih[:, 5:].contiguous(),
            model.cell.controller.cells[0].weight_hh, model.cell.heads.projection.weight,
            model.cell.heads.projection.bias, state.memory, state.weights,
            state.reads.flatten(1), state.controller[0][0], state.controller[1][0],
        )  # fmt: skip


def test_a_head_bias_of_another_size_is_refused():
    model = small_ntm()
    cell, state = model.cell, model.initial_state(2)
    lstm = cell.controller.cells[0]
    bias = torch.cat([cell.heads.projection.bias, torch.zeros(1, dtype=torch.float64)])
    with pytest.raises(ValueError, match="heads_bias has shape"):
        fused.FusedSequence.apply(
            fused.LSTM, 1, torch.zeros(4, 2, 64, dtype=torch.float64),
            lstm.weight_ih[:, 5:].contiguous(), lstm.weight_hh, cell.heads.projection.weight,
            bias, state.memory.transpose(1, 2).contiguous(), state.weights,
            state.reads.flatten(1), state.controller[0][0], state.controller[1][0],
        )  # fmt: skip


def test_double_backward_is_refused_not_wrong():
    model = small_ntm(fused=True)
    logits, _ = model(torch.rand(2, 4, 5, dtype=torch.float64))
    (grad,) = torch.autograd.grad(
        logits.sum(), [model.cell.heads.projection.weight], create_graph=True
    )
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.square().sum().backward()


def test_float32_training_matches_the_stepped_cell(products):
    reference, model = small_ntm(dtype=torch.float32), small_ntm(dtype=torch.float32, fused=True)
    x = torch.rand(4, 9, 5)
    for net in (reference, model):
        net(x)[0].sigmoid().mean().backward()
    torch.testing.assert_close(model(x)[0], reference(x)[0], rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_calls_without_gradients_run_fused_and_calls_with_a_trace_step(monkeypatch):
    model, reference = small_ntm(fused=True), small_ntm()
    x = torch.rand(2, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], reference(x)[0], rtol=1e-10, atol=1e-10)
        monkeypatch.setattr(fused, "run", lambda *args: pytest.fail("fused run called"))
        model(x, return_trace=True)


@pytest.mark.parametrize(
    "controller, options, reason",
    [
        ("transformer", {}, "neither the LSTM nor the MLP"),
        ("lstm", {"controller_options": {"hidden_size": 8, "num_layers": 2}}, "one layer"),
        ("mlp", {"write_heads": 2}, "write head"),
    ],
)
def test_unsupported_models_say_why_and_train_stepwise(controller, options, reason):
    model = small_ntm(controller, dtype=torch.float32, fused=True, **options)
    x = torch.rand(2, 4, 5)
    assert reason in fused.unsupported(model.cell, x)
    model(x)[0].sum().backward()  # the PyTorch step instead
    assert fused.unsupported(small_ntm(dtype=torch.float32).cell, x.double()) is not None


def test_without_a_compiler_the_model_warns_once_and_steps(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_NTM_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    fused._load.cache_clear()
    fused._warn_once.cache_clear()
    try:
        model = small_ntm(dtype=torch.float32, fused=True)
        with pytest.warns(UserWarning, match="fused NTM step unavailable"):
            model(torch.rand(2, 4, 5))[0].sum().backward()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model(torch.rand(2, 4, 5))  # once only
    finally:
        fused._load.cache_clear()
        fused._warn_once.cache_clear()
