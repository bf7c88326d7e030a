"""How often training hits a non-finite loss or gradient, and how often it diverges.

Runs ``python train.py`` once per seed (30 by default), cycling over the tasks and the NTM's
controllers, with the default settings (Adam 1e-3, batch 8, gradients clipped to ±10) for a
short run each, eager (``model.compile=false``), and reads what the NaN guard
(callbacks.NonFiniteGuard) counted:

- non-finite: at least one update skipped for a non-finite loss or gradient;
- diverged: stopped by the guard (`max_in_a_row` non-finite updates in a row), or ended with
  an in-distribution validation loss more than 10% above chance (ln 2 nats per bit: worse
  than answering 0.5 for every bit).

    python benchmarks/nonfinite_rate.py                      # 30 runs of 120 steps
    python benchmarks/nonfinite_rate.py --runs 9 --steps 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["copy", "repeat_copy", "associative_recall"]
CONTROLLERS = ["lstm", "mlp", "transformer"]
#: Chance level of the training loss: binary cross-entropy of 0.5 on every bit, in nats.
CHANCE_LOSS = math.log(2)
VAL_LOSS = "val/in_distribution/loss"


def run(task: str, controller: str, seed: int, steps: int, folder: Path) -> dict:
    """One training run; what the guard saw and how it ended."""
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"task={task}",
        f"controller={controller}",
        f"seed={seed}",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",  # validate once, at the end,
        "data.val_batches=2",  # on 32 sequences per set
        "model.compile=false",
        "logger=none",
        "evaluation.enabled=false",
        "callbacks.figures=null",
        "callbacks.stop_when_solved=null",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={folder}",
    ]
    start = time.perf_counter()
    result = subprocess.run(
        command,
        env=dict(os.environ, WANDB_MODE="disabled"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    last_line = (result.stderr.strip().splitlines() or [""])[-1]
    stopped = result.returncode == 1 and last_line.startswith("error: training: non-finite")
    if result.returncode != 0 and not stopped:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    metrics = {} if stopped else json.loads((folder / "summary.json").read_text())["metrics"]
    skipped = metrics.get("train/skipped_steps", 0)
    loss = metrics.get(VAL_LOSS, math.nan)
    return {
        "skipped": int(skipped),
        "stopped": stopped,
        "val_loss": loss,
        "nonfinite": stopped or skipped > 0,
        "diverged": stopped or not loss <= 1.1 * CHANCE_LOSS,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()

    print(f"{args.runs} runs of {args.steps} steps: task, controller and seed cycle per run")
    print("| run | task | controller | seed | skipped updates | stopped | val loss | wall (s) |")
    print("|---:|---|---|---:|---:|---|---:|---:|")
    outcomes = []
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(args.runs):
            task = TASKS[index % len(TASKS)]
            controller = CONTROLLERS[index // len(TASKS) % len(CONTROLLERS)]
            outcome = run(task, controller, index, args.steps, Path(scratch) / f"run{index}")
            outcomes.append(outcome)
            print(
                f"| {index} | {task} | {controller} | {index} | {outcome['skipped']} "
                f"| {outcome['stopped']} | {outcome['val_loss']:.3f} | {outcome['wall']:.1f} |",
                flush=True,
            )
    nonfinite = sum(o["nonfinite"] for o in outcomes)
    diverged = sum(o["diverged"] for o in outcomes)
    minutes = sum(o["wall"] for o in outcomes) / 60
    print(
        f"\nnon-finite: {nonfinite} of {len(outcomes)} runs; diverged: {diverged} of "
        f"{len(outcomes)} ({minutes:.1f} min)"
    )


if __name__ == "__main__":
    main()
