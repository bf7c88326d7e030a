"""The CUDA path: the same numbers as on the CPU, no host syncs in a training step, the compiled
step and bf16 autocast. Skipped where there is no CUDA GPU (CI has none; run these where one is)."""

import pytest
import test_model
import torch
import torch.nn.functional as F
from runs import compose_train

from ntm.experiment.run import train
from ntm.metrics import masked_bce

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

CONTROLLERS = test_model.CONTROLLERS


def small_ntm(controller, **kwargs):
    """test_model's small NTM (5 inputs, 4 outputs), stepped, the same weights at each call."""
    torch.manual_seed(0)
    return test_model.small_ntm(controller, fused=False, **kwargs)


def random_batch(batch=4, steps=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 2, (batch, steps, 5), generator=generator).double()
    targets = torch.randint(0, 2, (batch, steps, 4), generator=generator).double()
    return inputs, targets


def outputs_and_grads(model, inputs, targets):
    """Logits, final memory and parameter gradients (of a loss in the inputs' dtype: masked_bce
    computes in float32), on the CPU."""
    model.zero_grad(set_to_none=True)
    logits, state = model(inputs)
    F.binary_cross_entropy_with_logits(logits, targets).backward()
    grads = [p.grad.detach().cpu() for p in model.parameters()]
    return logits.detach().cpu(), state.memory.detach().cpu(), grads


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_cuda_matches_the_cpu_in_float64(controller):
    """Forward, final memory and every gradient, CUDA against CPU in float64: the same
    arithmetic up to summation order."""
    cpu = small_ntm(controller).double()
    gpu = small_ntm(controller).double().cuda()
    inputs, targets = random_batch()
    expected = outputs_and_grads(cpu, inputs, targets)
    actual = outputs_and_grads(gpu, inputs.cuda(), targets.cuda())
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(actual[1], expected[1], rtol=1e-9, atol=1e-10)
    for got, want in zip(actual[2], expected[2], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_a_cuda_training_step_never_syncs_with_the_host(controller):
    """Forward, loss, backward and Adam's step under CUDA's own sync detector, which raises on
    every call that makes the host wait for the device."""
    model = small_ntm(controller).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    inputs, targets = (t.float().cuda() for t in random_batch())
    mask = torch.ones(targets.shape[:2], dtype=torch.bool, device="cuda")
    for _ in range(2):  # the first step also creates Adam's state, the second reuses it
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            logits, _ = model(inputs)
            masked_bce(logits, targets, mask).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(logits).all()


def test_the_sync_detector_catches_a_sync():
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError, match="synchroniz"):
            torch.ones(3, device="cuda").sum().item()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("controller", ["lstm", "mlp"])
def test_the_compiled_step_on_cuda_matches_the_eager_one(controller):
    torch._dynamo.reset()  # compiled afresh, not over torch's recompile limit (then eager)
    eager = small_ntm(controller).cuda()
    compiled = small_ntm(controller, compile=True).cuda()
    inputs, targets = (t.float().cuda() for t in random_batch())
    expected = outputs_and_grads(eager, inputs, targets)
    actual = outputs_and_grads(compiled, inputs, targets)
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-4, atol=1e-5)
    for got, want in zip(actual[2], expected[2], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_bf16_autocast_keeps_the_memory_in_float32(controller):
    """Under bf16 autocast (trainer=gpu) the controller runs in bf16 and the addressing and
    memory in float32: the memory stays float32 and the outputs stay near float32's."""
    model = small_ntm(controller).cuda()
    inputs, targets = (t.float().cuda() for t in random_batch())
    reference, _ = model(inputs)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, state = model(inputs)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
    loss.backward()
    assert logits.dtype == torch.bfloat16  # autocast took effect
    assert state.memory.dtype == torch.float32 and state.weights.dtype == torch.float32
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(logits.float(), reference, rtol=0.1, atol=0.1)


def test_trainer_gpu_trains(tmp_path):
    """`trainer=gpu`: bf16 mixed precision, gradient clipping, default Adam, compiled step."""
    overrides = ["trainer=gpu", "trainer.max_steps=3", "logger=none", "evaluation.enabled=false"]
    summary = train(compose_train([*overrides, "callbacks.figures=null"], tmp_path), tmp_path)
    assert summary.steps == 3
