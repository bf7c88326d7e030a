"""What denormal floats cost a training step, and what flushing them to zero saves.

A float32 under about 1.2e-38 is stored as a denormal, and x86 arithmetic on one is many times
slower than on a normal number. Training makes them when gates saturate: a sigmoid gate at a
pre-activation near -80 passes back sigmoid'(-80), about 2e-35, times its upstream gradient,
which lands in the denormal range, and every product it enters slows down.

Without arguments: the LSTM baseline at 3 x 512 (about repeat copy's shape: batch 8, 110
steps), one forward and backward pass with a fraction of its input gates held there (their
bias set to -80). With `--checkpoint`: each train.py checkpoint's own model on a batch of 8
at its task's largest training difficulty. Either way with flushing off (torch's default)
and on (train.py's `flush_denormal`, the default), alternated, printing the fastest step in
milliseconds.

    python benchmarks/denormals.py
    python benchmarks/denormals.py --checkpoint multirun/<run>/checkpoints/last.ckpt [...]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ntm import LSTMBaseline

SATURATED_FRACTIONS = (0.0, 0.01, 0.05, 0.25)
GATE_BIAS = -80.0  # sigmoid'(-80) ~ 1.8e-35: times a gradient under ~1e-3, a denormal
BATCH, STEPS, HIDDEN = 8, 110, 512  # about repeat copy at 10 items x 10 repeats (113 steps)
REPEATS = 3


def step_seconds(model, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The fastest of REPEATS forward and backward passes, in seconds."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        logits = model(inputs)[0]
        F.binary_cross_entropy_with_logits(logits, targets).backward()
        times.append(time.perf_counter() - start)
    return min(times)


def off_and_on(model, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """The fastest step with flushing off and with it on, each measured twice, alternated
    (against drift in the machine's speed)."""
    times = {False: [], True: []}
    for flushed in (False, True, False, True):
        torch.set_flush_denormal(flushed)
        times[flushed].append(step_seconds(model, inputs, targets))
    torch.set_flush_denormal(False)
    return min(times[False]), min(times[True])


def saturated_gates() -> None:
    torch.manual_seed(0)
    inputs = (torch.rand(BATCH, STEPS, 10) < 0.5).float()
    targets = (torch.rand(BATCH, STEPS, 9) < 0.5).float()
    print("saturated input gates | flushing off (ms) | on (ms) | slowdown without flushing")
    for fraction in SATURATED_FRACTIONS:
        torch.manual_seed(0)
        model = LSTMBaseline(input_size=10, output_size=9, hidden_size=HIDDEN, num_layers=3)
        with torch.no_grad():
            for layer in range(3):  # PyTorch's gate order: input, forget, cell, output
                getattr(model.lstm, f"bias_ih_l{layer}")[: int(fraction * HIDDEN)] = GATE_BIAS
        off, on = off_and_on(model, inputs, targets)
        print(f"{fraction:>21.0%} | {off * 1e3:>17.0f} | {on * 1e3:>7.0f} | {off / on:.1f}x")


def checkpoints(paths: list[str]) -> None:
    from ntm.experiment.config import load_trained

    print("checkpoint | flushing off (ms) | on (ms) | slowdown without flushing")
    for path in paths:
        _, task, model, _ = load_trained(path)
        model.train()
        hardest = {
            f"{bound}_{name}": task.difficulty[f"max_{name}"]
            for name in task.range_floors
            for bound in ("min", "max")
        }
        batch = task.sample(BATCH, torch.Generator().manual_seed(0), **hardest)
        step_seconds(model, batch[0], batch[1])  # warm-up: the fused sequence's first call
        off, on = off_and_on(model, batch[0], batch[1])
        print(f"{path} | {off * 1e3:.1f} | {on * 1e3:.1f} | {off / on:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="+", help="train.py checkpoints to time instead")
    args = parser.parse_args()
    if not torch.set_flush_denormal(False):
        raise SystemExit("this CPU cannot flush denormals (torch.set_flush_denormal)")
    torch.set_num_threads(1)
    if args.checkpoint:
        checkpoints(args.checkpoint)
    else:
        saturated_gates()


if __name__ == "__main__":
    main()
