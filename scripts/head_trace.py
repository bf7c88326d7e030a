"""Where a trained NTM's heads go, step by step, on one sequence: the slot each head weights
most and that weight (1.0: sharp; about 1/slots: spread over the whole memory), and the wrong
bits of the answer. For seeing why a model fails where the grids only say that it does.

    python scripts/head_trace.py <run>/checkpoints/best.ckpt length=120 --slots 128 --every 10

Difficulty settings are the task's own (`length=120`, `items=15`, `length=10 repeats=20`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ntm

from ntm.experiment.config import Trained, load_trained  # noqa: E402
from ntm.experiment.evaluation import as_difficulty  # noqa: E402
from ntm.metrics import bit_errors_per_sequence  # noqa: E402


def trained_ntm(
    parser: argparse.ArgumentParser, checkpoint: Path, settings: list[str]
) -> tuple[Trained, dict[str, int]]:
    """The checkpoint's NTM and the difficulty of `key=integer` settings, or the parser's
    one-line error."""
    try:
        difficulty = {k: int(v) for k, v in (item.split("=", 1) for item in settings)}
    except ValueError:
        parser.error("difficulty settings are key=integer, e.g. length=120")
    trained = load_trained(checkpoint)
    if not hasattr(trained.model, "memory_slots"):
        parser.error("the checkpoint's model has no memory (the LSTM baseline)")
    return trained, difficulty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("difficulty", nargs="*", help="key=value, e.g. length=120")
    parser.add_argument("--slots", type=int, help="memory size (default: the model's own)")
    parser.add_argument("--every", type=int, default=1, help="print every N-th step")
    parser.add_argument("--seed", type=int, default=0, help="of the sequence")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be >= 1, got {args.every}")
    trained, difficulty = trained_ntm(parser, args.checkpoint, args.difficulty)
    model, task = trained.model, trained.task
    generator = torch.Generator().manual_seed(args.seed)
    inputs, targets, mask = task.sample(1, generator, **as_difficulty(difficulty))
    state = model.initial_state(1, memory_slots=args.slots)
    with torch.no_grad():
        logits, _, trace = model(inputs, state, return_trace=True)
    errors = float(bit_errors_per_sequence(logits, targets, mask))
    slots = args.slots or model.memory_slots
    print(f"{inputs.shape[1]} steps, {slots} slots: {errors:g} wrong bits")
    heads = [("read", h) for h in range(trace.read_weights.shape[2])]
    heads += [("write", h) for h in range(trace.write_weights.shape[2])]
    print("step  " + "  ".join(f"{kind}{h}: slot (weight)" for kind, h in heads))
    for step in range(0, inputs.shape[1], args.every):
        cells = []
        for kind, h in heads:
            weights = (trace.read_weights if kind == "read" else trace.write_weights)[0, step, h]
            cells.append(f"{int(weights.argmax()):>11} ({float(weights.max()):.2f})")
        print(f"{step:>4}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
