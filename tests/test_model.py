"""NTMCell, NTM, controllers and the LSTM baseline (ntm/model.py, ntm/controllers, baselines)."""

import copy
import functools

import pytest
import torch
import torch._dynamo.testing
from torch.utils._python_dispatch import TorchDispatchMode

import ntm.fused
from ntm import NTM, LSTMBaseline, controllers
from ntm.controllers import Controller, TransformerController, register
from ntm.metrics import masked_bce

CONTROLLERS = ["lstm", "mlp", "transformer"]


def small_ntm(controller="lstm", **kwargs):
    options = dict(
        input_size=5,
        output_size=4,
        controller=controller,
        controller_options={"hidden_size": 16},
        memory_slots=12,
        memory_width=6,
    )
    return NTM(**(options | kwargs))


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_shapes_and_backward_for_every_controller(controller):
    model = small_ntm(controller, read_heads=2, write_heads=2)
    x = torch.rand(3, 7, 5)
    logits, state, trace = model(x, return_trace=True)
    assert logits.shape == (3, 7, 4)
    assert state.memory.shape == (3, 12, 6)
    assert state.reads.shape == (3, 2, 6)
    assert trace.read_weights.shape == trace.write_weights.shape == (3, 7, 2, 12)
    torch.testing.assert_close(trace.read_weights.sum(-1), torch.ones(3, 7, 2))
    logits.sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_baseline_has_the_same_call_signature():
    model = LSTMBaseline(input_size=5, output_size=4, hidden_size=16, num_layers=2)
    x = torch.rand(3, 7, 5)
    logits, state = model(x)
    assert logits.shape == (3, 7, 4)
    assert model(x, return_trace=True)[2] is None
    carried, _ = model(x[:, 4:], model(x[:, :4])[1])
    torch.testing.assert_close(carried, logits[:, 4:])
    model.initial_state(3, memory_slots=256)  # accepted and ignored
    logits.sum().backward()


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_state_carried_across_calls_equals_one_call(controller):
    model = small_ntm(controller)
    x = torch.rand(2, 9, 5)
    whole, whole_state = model(x)
    first, state = model(x[:, :4])
    second, state = model(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    torch.testing.assert_close(state.memory, whole_state.memory)


def test_memory_size_is_not_a_parameter():
    model = small_ntm(memory_slots=128)
    bigger = small_ntm(memory_slots=256)
    bigger.load_state_dict(model.state_dict())  # the same parameter shapes
    x = torch.rand(2, 5, 5)
    logits, state = model(x, model.initial_state(2, memory_slots=256))
    assert state.memory.shape == (2, 256, 6)
    torch.testing.assert_close(logits, bigger(x)[0])
    assert model(x)[1].memory.shape == (2, 128, 6)


def test_gradcheck_through_a_full_ntm_step():
    model = small_ntm(controller_options={"hidden_size": 5}, memory_slots=5, memory_width=3)
    model = model.double()
    x = torch.rand(2, 5, dtype=torch.float64, requires_grad=True)
    state = model.initial_state(2)
    # start from a nonzero random memory so that every path carries gradient
    memory = torch.randn_like(state.memory).requires_grad_(True)

    def step(x, memory):
        output, next_state = model.cell(x, state._replace(memory=memory))
        return output, next_state.memory, next_state.weights

    assert torch.autograd.gradcheck(step, (x, memory))


def test_finite_gradients_from_the_default_nearly_zero_memory_and_zero_input():
    model = small_ntm(memory_init="constant", memory_init_value=0.0)
    logits, _ = model(torch.zeros(2, 6, 5))
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_transformer_cached_steps_equal_a_full_causal_pass():
    for positional in ("none", "alibi", "sinusoidal"):
        torch.manual_seed(0)
        controller = TransformerController(
            input_size=5, hidden_size=16, num_layers=2, num_heads=4, positional=positional
        )
        x = torch.randn(3, 8, 5)
        state = controller.initial_state(3, device=x.device, dtype=x.dtype)
        steps = []
        for t in range(8):
            output, state = controller(x[:, t], state)
            steps.append(output)
        torch.testing.assert_close(torch.stack(steps, 1), controller.forward_sequence(x))
        assert state[0].shape == (2, 3, 4, 8, 4)  # (layers, b, heads, t, head width)


@pytest.mark.parametrize("positional", ["none", "alibi", "sinusoidal"])
def test_transformer_window_hides_the_steps_before_it(positional):
    torch.manual_seed(0)
    controller = TransformerController(
        input_size=5, hidden_size=16, num_heads=4, positional=positional, window=3
    )
    x = torch.randn(2, 8, 5)
    changed = x.clone()
    changed[:, :5] = torch.randn(2, 5, 5)  # every step before the last 3
    out, out_changed = controller.forward_sequence(x), controller.forward_sequence(changed)
    torch.testing.assert_close(out_changed[:, 7], out[:, 7])  # step 7 sees steps 5-7 only
    assert not torch.allclose(out_changed[:, 6], out[:, 6])  # step 6 sees step 4 too
    if positional != "sinusoidal":  # relative positions: the same as a run on the 3 steps alone
        torch.testing.assert_close(controller.forward_sequence(x[:, 5:])[:, -1], out[:, -1])
    # the one-step path with its cache agrees with the full pass
    state = controller.initial_state(2, device=x.device, dtype=x.dtype)
    steps = []
    for t in range(8):
        output, state = controller(x[:, t], state)
        steps.append(output)
    torch.testing.assert_close(torch.stack(steps, 1), out)


def test_transformer_window_of_all_steps_equals_no_window():
    torch.manual_seed(0)
    full = TransformerController(input_size=5, hidden_size=16, num_heads=4)
    windowed = TransformerController(input_size=5, hidden_size=16, num_heads=4, window=8)
    windowed.load_state_dict(full.state_dict())
    x = torch.randn(2, 8, 5)
    torch.testing.assert_close(windowed.forward_sequence(x), full.forward_sequence(x))


def test_unknown_controller_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"registered controllers: \['lstm', 'mlp'"):
        small_ntm("gru")


def test_a_user_can_register_a_controller():
    @register("test_gru")
    class GRUController(Controller):
        def __init__(self, *, input_size, hidden_size=8):
            super().__init__()
            self.output_size = hidden_size
            self.cell = torch.nn.GRUCell(input_size, hidden_size)

        def initial_state(self, batch_size, *, device, dtype):
            return torch.zeros(batch_size, self.output_size, device=device, dtype=dtype)

        def forward(self, x, state):
            h = self.cell(x, state)
            return h, h

    assert "test_gru" in controllers.available()
    logits, _ = small_ntm("test_gru", controller_options={"hidden_size": 8})(torch.rand(2, 3, 5))
    assert logits.shape == (2, 3, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"read_heads": 0}, "at least one read and one write head"),
        ({"memory_width": 0}, "memory_width must be >= 1"),
        ({"memory_slots": 0}, "memory_slots must be >= 1"),
        ({"memory_init": "zeros"}, "unknown memory init"),
        ({"controller_options": {"hidden_size": 0}}, "hidden_size >= 1"),
        ({"controller": "transformer", "controller_options": {"window": 0}}, "window must be >= 1"),
    ],
)
def test_bad_sizes_fail_with_clear_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_ntm(**kwargs)


def test_wrong_input_width_is_reported():
    with pytest.raises(ValueError, match=r"\(batch, time, 5\)"):
        small_ntm()(torch.rand(2, 3, 4))


def test_zero_memory_slots_at_call_time_is_rejected_not_replaced_by_the_default():
    with pytest.raises(ValueError, match="memory_slots must be >= 1"):
        small_ntm().initial_state(2, memory_slots=0)


def test_an_empty_sequence_is_reported():
    with pytest.raises(ValueError, match="at least one time step"):
        small_ntm()(torch.rand(2, 0, 5))


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_a_model_cast_to_bf16_runs_and_keeps_its_memory_in_float32(controller):
    full = small_ntm(controller)
    model = copy.deepcopy(full).to(torch.bfloat16)
    x = torch.rand(2, 4, 5)
    logits, state = model(x.bfloat16())
    assert logits.dtype == torch.bfloat16
    assert state.memory.dtype == state.weights.dtype == torch.float32
    torch.testing.assert_close(logits.float(), full(x)[0], atol=0.05, rtol=0.05)
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_bf16_autocast_keeps_addressing_in_float32():
    model = small_ntm()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, state, trace = model(torch.rand(2, 4, 5), return_trace=True)
    assert logits.dtype == torch.bfloat16
    assert state.memory.dtype == trace.read_weights.dtype == torch.float32
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_compiled_step_matches_eager():
    torch.manual_seed(0)
    eager = small_ntm()
    compiled = small_ntm(compile=True)
    compiled.load_state_dict(eager.state_dict())
    x = torch.rand(2, 4, 5)
    torch.testing.assert_close(compiled(x)[0], eager(x)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("how", ["compile=True", "module.compile()"])
def test_a_deep_copy_of_a_compiled_model_trains_its_own_parameters(how):
    """A compiled step is bound to one cell: a copy (an EMA or a teacher, say) must not step
    the original's. Either way of compiling: the NTM's own option or nn.Module.compile."""
    original = small_ntm(compile=how == "compile=True")
    if how == "module.compile()":
        original.compile()
    x = torch.rand(2, 4, 5)
    original(x)[0].sum().backward()  # compiled: the step now exists
    original.zero_grad(set_to_none=True)
    copy_ = copy.deepcopy(original)
    copy_(x)[0].sum().backward()
    assert all(p.grad is None for p in original.parameters())
    assert all(p.grad is not None for p in copy_.parameters())


@pytest.mark.parametrize("controller", ["lstm", "mlp"])
def test_compiled_step_compiles_once_for_every_sequence_length(controller, monkeypatch):
    """One graph for all lengths and steps: a recompile costs seconds to tens of seconds.
    (The Transformer's key/value cache grows each step: a second, dynamic-shape graph.)"""
    counter = torch._dynamo.testing.CompileCounter()
    compile_with_counter = functools.partial(torch.compile, backend=counter)
    monkeypatch.setattr(torch, "compile", compile_with_counter)
    torch._dynamo.reset()
    model = small_ntm(controller=controller, compile=True)
    for length in (3, 5, 8):
        model(torch.rand(2, length, 5))[0].sum().backward()
    assert counter.frame_count == 1


class HostSyncDetector(TorchDispatchMode):
    """Fails on any op that makes the host wait for the device: reading a value (`.item()`,
    `.tolist()`, `if tensor:`) or an output whose shape depends on the data."""

    SYNCING = {
        torch.ops.aten._local_scalar_dense.default,
        torch.ops.aten.nonzero.default,
        torch.ops.aten.masked_select.default,
        torch.ops.aten.is_nonzero.default,
        torch.ops.aten.equal.default,
        torch.ops.aten._unique2.default,
    }

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SYNCING:
            raise AssertionError(f"{func} syncs with the host")
        boolean_mask = func is torch.ops.aten.index.Tensor and any(
            i is not None and i.dtype == torch.bool for i in args[1]
        )
        if boolean_mask:  # the output's shape depends on the data
            raise AssertionError("boolean-mask indexing syncs with the host")
        return func(*args, **kwargs)


def test_host_sync_detector_catches_a_sync():
    with pytest.raises(AssertionError, match="syncs"), HostSyncDetector():
        torch.ones(3).sum().item()
    with pytest.raises(AssertionError, match="boolean-mask"), HostSyncDetector():
        torch.ones(3)[torch.tensor([True, False, True])]


@pytest.mark.parametrize(
    "controller, fused", [("lstm", False), ("mlp", False), ("transformer", False), ("lstm", True)]
)
def test_a_training_step_never_syncs_with_the_host(controller, fused):
    """Forward, loss and backward, stepped and fused (ntm.fused: its tensors' sizes are read
    from shapes, never from values). (The optimiser is torch's: Adam reads its step count, a
    CPU tensor unless `capturable=True`, which costs no device sync either.)"""
    if fused and not ntm.fused.available():
        pytest.skip("the fused library cannot be built here (no C++ compiler)")
    model = small_ntm(controller=controller, fused=fused)
    inputs, targets = torch.rand(2, 6, 5), torch.rand(2, 6, 4).round()
    mask = torch.rand(2, 6) > 0.5
    with HostSyncDetector():
        logits, _ = model(inputs)
        masked_bce(logits, targets, mask).backward()
    assert all(p.grad is not None for p in model.parameters())
