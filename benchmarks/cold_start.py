"""What a cold start costs: the first training steps of the default NTM on an empty compile cache.

Trains one batch at each of a few copy lengths, as the default run's first steps do (batch 8,
lengths drawn from 1-20), with a fresh TORCHINDUCTOR_CACHE_DIR, and prints the seconds each
step took and how many graphs torch.compile built. A recompile (a new length, the first
step's state) costs about as much as the first compile.

    python benchmarks/cold_start.py
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="ntm-cold-")  # before torch

import torch  # noqa: E402
import torch._dynamo.utils  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ntm import NTM  # noqa: E402

LENGTHS = (5, 7, 3, 12)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = NTM(input_size=9, output_size=8, compile=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    print("| step | copy length | seconds |")
    print("|---:|---:|---:|")
    total = 0.0
    for step, length in enumerate(LENGTHS):
        inputs = torch.randint(0, 2, (8, 2 * length + 1, 9)).float()
        targets = torch.randint(0, 2, (8, 2 * length + 1, 8)).float()
        start = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(model(inputs)[0], targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds = time.perf_counter() - start
        total += seconds
        print(f"| {step} | {length} | {seconds:.1f} |", flush=True)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    print(f"\n{total:.1f} s for {len(LENGTHS)} steps; graphs compiled: {graphs}")


if __name__ == "__main__":
    main()
