"""The full comparison, one command: tasks x models x seeds, then `compare.py`.

    python scripts/comparison.py                                   # 4 tasks x 4 models x 3 seeds
    python scripts/comparison.py --tasks copy --models ntm-lstm ntm-mlp --seeds 0 1 --jobs 2
    python scripts/comparison.py --overrides trainer.max_steps=200   # a smoke test

Each run trains in its own folder, `<runs>/<task>/<model>/seed<k>/`. Resumable: a run whose
folder already has summary.json and results.json is not redone, so after an interruption the
same command carries on where it stopped: an unfinished run resumes from its last checkpoint.
A run stopped as diverged (non-finite updates in a row) is recorded as such and not redone.
Each run's progress (a line every 200 steps and one per validation) is in its folder's
`train.log`, Hydra's log: `tail -f <runs>/<task>/<model>/seed<k>/train.log`; all it printed,
errors included, in `console.txt`.
`--jobs` runs that many trainings side by side (one thread each: 2 use this 2-core machine
fully). When every run is done, `compare.py` writes the tables and figures into `--out`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: ntm is this repository's

from ntm.experiment.results import RESULTS_FILE, SUMMARY_FILE, RunSummary, read  # noqa: E402

TASKS = ["copy", "repeat_copy", "associative_recall", "priority_sort"]
MODELS = ["ntm-lstm", "ntm-mlp", "ntm-transformer", "lstm_baseline"]


def model_overrides(label: str) -> list[str]:
    """`ntm-mlp` -> the NTM with the mlp controller; `lstm_baseline` -> the baseline."""
    if label.startswith("ntm-"):
        return ["model=ntm", f"model/controller={label.removeprefix('ntm-')}"]
    return [f"model={label}"]


def is_done(folder: Path) -> bool:
    return (folder / SUMMARY_FILE).exists() and (folder / RESULTS_FILE).exists()


def train(task: str, label: str, seed: int, folder: Path, overrides: list[str]) -> str:
    """One training run in `folder`; returns a line for the log."""
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"task={task}",
        *model_overrides(label),
        f"seed={seed}",
        "logger=none",
        "callbacks.progress.style=lines",  # train.log shows how far the run is
        *overrides,
        f"hydra.run.dir={folder}",
    ]
    last = folder / "checkpoints" / "last.ckpt"
    if last.exists():  # interrupted: carry on
        command.insert(-1, f"ckpt_path={last}")
    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    # not train.log: Hydra writes that file itself, and two writers garble it
    with open(folder / "console.txt", "a") as console:  # a resumed run's output follows
        result = subprocess.run(command, cwd=ROOT, stdout=console, stderr=subprocess.STDOUT)
    minutes = (time.perf_counter() - start) / 60
    if not is_done(folder):
        status = "FAILED (see console.txt)"
    elif read(folder / SUMMARY_FILE, RunSummary).diverged:  # recorded, so not redone
        status = "diverged (see console.txt)"
    else:
        status = "done" if result.returncode == 0 else "FAILED after its results (see console.txt)"
    return f"{task} {label} seed {seed}: {status} in {minutes:.1f} min"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="trainings side by side")
    parser.add_argument("--runs", type=Path, default=ROOT / "multirun" / "comparison")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--overrides", nargs="*", default=[], help="for every train.py run")
    args = parser.parse_args()

    todo, done = [], 0
    for task in args.tasks:
        for label in args.models:
            for seed in args.seeds:
                folder = args.runs / task / label / f"seed{seed}"
                if is_done(folder):
                    done += 1
                else:
                    todo.append((task, label, seed, folder, args.overrides))
    print(f"{done} runs already done, {len(todo)} to run, {args.jobs} at a time", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for line in pool.map(lambda job: train(*job), todo):
            print(line, flush=True)
    folders = [args.runs / task for task in args.tasks]
    return subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), *map(str, folders), "--out", str(args.out)],
        cwd=ROOT,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
