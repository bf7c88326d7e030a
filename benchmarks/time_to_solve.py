"""Wall time from the command to a solved task: runs ``python train.py`` per seed, cold and warm.

"Solved" is the training stop rule: validation bit errors per sequence under `solved_below`
(0.05) on the training distribution. The time counts everything a user waits for until then
(start-up, compilation, validation), from starting the process to its exit; the evaluation
grids that normally follow training are switched off here.

Cold: empty caches, as on a fresh machine: a fresh TORCHINDUCTOR_CACHE_DIR (inductor's and
AOTAutograd's caches) and a fresh TORCH_NTM_CACHE (the fused sequence's C++ library, built on
first use; the project writes no other cache). Warm: the same run again with the caches the
cold run left (`--no-warm` skips it).

    python benchmarks/time_to_solve.py                       # copy, LSTM, seeds 0-4
    python benchmarks/time_to_solve.py --seeds 0 1 --overrides controller=mlp
    python benchmarks/time_to_solve.py --timeout 300    # a run not solved by then: "not within"
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


def timed_run(
    overrides: list[str], run_dir: Path, cache_dir: Path, timeout: float
) -> tuple[float, dict | None]:
    """Seconds from the command to its exit, and the run's summary (None: stopped at
    `timeout` seconds, unsolved). A failed run raises CalledProcessError, its error printed."""
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *overrides,
        "logger=none",
        "evaluation.enabled=false",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    env = dict(
        os.environ,
        WANDB_MODE="disabled",
        TORCHINDUCTOR_CACHE_DIR=str(cache_dir / "inductor"),
        TORCH_NTM_CACHE=str(cache_dir / "ntm"),
    )
    start = time.perf_counter()
    try:
        subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return timeout, None
    except subprocess.CalledProcessError as error:  # say why, not only that it failed
        stderr = error.stderr.decode(errors="replace")[-3000:]
        print(f"train.py failed ({error.returncode}):\n{stderr}", file=sys.stderr)
        raise
    wall = time.perf_counter() - start
    return wall, json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--overrides", nargs="*", default=[], help="train.py overrides")
    parser.add_argument("--no-warm", dest="warm", action="store_false", help="cold runs only")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds before a run counts as unsolved"
    )
    args = parser.parse_args()

    print(f"python train.py {' '.join(args.overrides)} logger=none (seeds {args.seeds})")
    print(
        "| seed | solved | cold wall time (s) | warm wall time (s) | training time (s) | steps "
        "| sequences | bit errors at length 40 |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    colds, warms, solved = [], [], 0
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            overrides = [*args.overrides, f"seed={seed}"]
            cache = Path(scratch) / f"cache{seed}"
            try:
                cold, summary = timed_run(
                    overrides, Path(scratch) / f"seed{seed}", cache, args.timeout
                )
            except subprocess.CalledProcessError:  # on with the next seed
                print(f"| {seed} | train.py failed | - | - | - | - | - | - |", flush=True)
                continue
            colds.append(cold)
            if summary is None:  # not solved in time: no warm run either
                unsolved = f"| {seed} | not within {args.timeout:.0f} s | > {cold:.0f} |"
                print(unsolved + " - | - | - | - | - |", flush=True)
                continue
            warm = "-"
            if args.warm:
                run_dir = Path(scratch) / f"seed{seed}w"
                warms.append(timed_run(overrides, run_dir, cache, args.timeout)[0])
                warm = f"{warms[-1]:.1f}"
            solved += summary["solved"]
            length_40 = summary["metrics"].get("val/length_40/bit_errors", float("nan"))
            print(
                f"| {seed} | {summary['solved']} | {cold:.1f} | {warm} "
                f"| {summary['wall_time_s']:.1f} | {summary['steps']} "
                f"| {summary['sequences_seen']:,} | {length_40:.2f} |",
                flush=True,
            )
    # an unsolved run counts at its timeout (a lower bound on its time), a failed one not at all
    cold_median = f"{statistics.median(colds):.1f} s" if colds else "-"
    print(
        f"\nsolved: {solved}/{len(args.seeds)}; median wall time: cold {cold_median}"
        + (f", warm {statistics.median(warms):.1f} s" if warms else "")
    )


if __name__ == "__main__":
    main()
