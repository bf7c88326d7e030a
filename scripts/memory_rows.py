"""Whether the memory rows a trained NTM barely wrote to hold leaked writes or their start.

Measured after the first `--steps` steps of a sequence (repeat copy's 12 at length 10: the
start marker, the items and the count, i.e. what was stored), for reading what
`model.memory_init_value` changes.

    python scripts/memory_rows.py <run>/checkpoints/best.ckpt length=10 repeats=10 --steps 12

A write weighting is a softmax, so every row takes a little of every write. The rows whose
write weight, summed over those steps, is in the lowest `--fraction` are "barely written";
for each of them, |row - start| / |start| (start: the row before the first step) says whether
it still holds the starting value (much below 1) or mostly leaked writes (much above 1).
Difficulty settings are the task's own (`length=10`, `items=6`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ntm

from ntm.experiment.evaluation import as_difficulty  # noqa: E402
from scripts.head_trace import trained_ntm  # noqa: E402


def barely_written_rows(model: torch.nn.Module, inputs: Tensor, fraction: float):
    """For the `fraction` of each sequence's rows with the least summed write weight over
    `inputs` (b, t, i): that weight (b, k) and |row after t steps - starting row| /
    |starting row| (b, k)."""
    state = model.initial_state(inputs.shape[0])
    start = state.memory  # (b, n, w)
    with torch.no_grad():
        _, final, trace = model(inputs, state, return_trace=True)
    written = trace.write_weights.sum(dim=(1, 2))  # (b, n): over time and write heads
    change = (final.memory - start).norm(dim=-1) / start.norm(dim=-1)  # (b, n)
    count = max(1, int(fraction * written.shape[1]))
    rows = written.argsort(dim=1)[:, :count]
    return written.gather(1, rows), change.gather(1, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("difficulty", nargs="*", help="key=value, e.g. length=10 repeats=10")
    parser.add_argument("--sequences", type=int, default=32)
    parser.add_argument("--fraction", type=float, default=0.5, help="of rows, least written")
    parser.add_argument("--seed", type=int, default=0, help="of the sequences")
    parser.add_argument("--steps", type=int, help="the first N steps (default: all)")
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.sequences < 1:
        parser.error(f"--sequences must be >= 1, got {args.sequences}")
    trained, difficulty = trained_ntm(parser, args.checkpoint, args.difficulty)
    model, task = trained.model, trained.task
    if trained.config.model.get("memory_init") != "constant":
        parser.error("the checkpoint's memory does not start from a constant")
    generator = torch.Generator().manual_seed(args.seed)
    inputs, _, _ = task.sample(args.sequences, generator, **as_difficulty(difficulty))
    inputs = inputs[:, : args.steps]
    written, change = barely_written_rows(model, inputs, args.fraction)
    print(
        f"start {trained.config.model.memory_init_value:g}, {inputs.shape[1]} steps: "
        f"the least-written {args.fraction:g} of rows took write weight "
        f"{float(written.median()):.2g} (median; max {float(written.max()):.2g}); "
        f"|row - start| / |start| median {float(change.median()):.3g} "
        f"[{float(change.min()):.3g}-{float(change.max()):.3g}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
