"""Wall time from the command to a solved task: runs ``python train.py`` once per seed.

"Solved" is the training stop rule: validation bit errors per sequence under 0.05 on the
training distribution. The time counts everything a user waits for until then (start-up,
compilation, validation), from starting the process to its exit; the evaluation grids that
normally follow training are switched off here.

    python benchmarks/time_to_solve.py                       # copy, LSTM, seeds 0-4
    python benchmarks/time_to_solve.py --seeds 0 1 --overrides controller=mlp
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--overrides", nargs="*", default=[], help="train.py overrides")
    args = parser.parse_args()

    env = dict(os.environ, WANDB_MODE="disabled")
    print(f"python train.py {' '.join(args.overrides)} logger=none (seeds {args.seeds})")
    print(
        "| seed | solved | wall time (s) | training time (s) | steps | sequences "
        "| bit errors at length 40 |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    walls = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            run_dir = Path(scratch) / f"seed{seed}"
            command = [
                sys.executable,
                str(ROOT / "train.py"),
                *args.overrides,
                f"seed={seed}",
                "logger=none",
                "evaluation.enabled=false",
                "trainer.enable_progress_bar=false",
                f"hydra.run.dir={run_dir}",
            ]
            start = time.perf_counter()
            subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
            wall = time.perf_counter() - start
            summary = json.loads((run_dir / "summary.json").read_text())
            walls.append(wall)
            print(
                f"| {seed} | {summary['solved']} | {wall:.1f} | {summary['wall_time_s']:.1f} "
                f"| {summary['steps']} | {summary['sequences_seen']:,} "
                f"| {summary['metrics'].get('val/length_40/bit_errors', float('nan')):.2f} |",
                flush=True,
            )
    print(f"\nmedian wall time: {statistics.median(walls):.1f} s")


if __name__ == "__main__":
    main()
