"""What the matrix products of one training step cost in PyTorch's own matrix library (MKL on
x86), as a floor for the fused sequence: the controller's and heads' products every step, and
the parameter-gradient products once per sequence, at the throughput benchmark's sizes (LSTM
controller of 100, 128 x 20 memory, one read head, copy length 20: 41 steps).

    python benchmarks/products.py [--batch-size 32] [--threads 1]

Prints each product's time (the fastest of several repeats of a timed loop) and the total per
training step against the time a step may take for a target throughput.
"""

from __future__ import annotations

import argparse
import time

import torch

STEPS, WIDTH, WORD, INPUT = 41, 100, 20, 9
GATES = 4 * WIDTH  # LSTM pre-activations
HEAD_PARAMS = 2 * (WORD + 3 + 3) + 2 * WORD  # read and write head (3 shifts), erase and add


def seconds_per_call(
    rows: int, inner: int, cols: int, transposed: bool = False, repeats: int = 5
) -> float:
    """The fastest mean time of `torch.mm(out=)` on (rows, inner) @ (inner, cols); with
    `transposed`, the left factor is the transpose of an (inner, rows) tensor, as in the
    parameter gradients (d output^T @ input over all steps)."""
    a = torch.randn(inner, rows).t() if transposed else torch.randn(rows, inner)
    b, out = torch.randn(inner, cols), torch.empty(rows, cols)
    calls = max(20, int(2e8 / (2 * rows * inner * cols)))  # about 0.2 GFLOP a timed loop
    for _ in range(calls // 4):
        torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b, out=out)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target", type=float, default=2000.0, help="sequences/s")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b, tb = args.batch_size, STEPS * args.batch_size
    # (what, rows, inner, cols, left factor transposed, calls per training step)
    products = [
        ("reads -> gates (every step)", b, WORD, GATES, False, STEPS),
        ("hidden -> gates (every step)", b, WIDTH, GATES, False, STEPS),
        ("hidden -> head parameters (every step)", b, WIDTH, HEAD_PARAMS, False, STEPS),
        ("d gates -> d hidden (every step, backward)", b, GATES, WIDTH, False, STEPS),
        ("d gates -> d reads (every step, backward)", b, GATES, WORD, False, STEPS),
        ("d head parameters -> d hidden (every step, backward)", b, HEAD_PARAMS, WIDTH, False,
         STEPS),
        ("input -> gates (once)", tb, INPUT, GATES, False, 1),
        ("d hidden weights (once)", GATES, tb, WIDTH, True, 1),
        ("d read weights (once)", GATES, tb, WORD, True, 1),
        ("d head weights (once)", HEAD_PARAMS, tb, WIDTH, True, 1),
        ("output layer (once)", tb, WIDTH + WORD, 8, False, 1),
        ("d output weights (once)", 8, tb, WIDTH + WORD, True, 1),
        ("d output layer's input (once)", tb, 8, WIDTH + WORD, False, 1),
    ]  # fmt: skip
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {b}, {STEPS} steps")
    print("| product | shape | µs a call | GFLOP/s | calls a step | ms a step |")
    print("|---|---|---:|---:|---:|---:|")
    total = 0.0
    for what, rows, inner, cols, transposed, calls in products:
        per_call = seconds_per_call(rows, inner, cols, transposed)
        total += per_call * calls
        rate = 2 * rows * inner * cols / per_call / 1e9
        shape = f"{rows}x{inner}{' (transposed)' if transposed else ''} @ {inner}x{cols}"
        print(f"| {what} | {shape} | {per_call * 1e6:.1f} | {rate:.1f} | {calls} | "
              f"{per_call * calls * 1e3:.2f} |")  # fmt: skip
    budget = b / args.target
    print(f"\nproducts: {total * 1e3:.1f} ms a training step; {args.target:,.0f} sequences/s at "
          f"batch {b} allows {budget * 1e3:.1f} ms for the whole step")  # fmt: skip


if __name__ == "__main__":
    main()
