"""The conversion experiment (README "Conversion"): train the teachers, then their students,
then write the table of agreement in-distribution and at 2x and 6x the training difficulty.

    python scripts/conversion.py --out conversion           # the full experiment: hours
    python scripts/conversion.py --out /tmp/smoke --smoke   # a few steps a run, end to end
    python scripts/conversion.py --out conversion --dry-run # the train.py commands only
    python scripts/conversion.py --out conversion --tasks copy --teachers lstm  # a part of it

Per task and seed: each teacher (trained on the truth until solved or --teacher-steps), then
each student of it for --student-steps (a fixed budget, the best checkpoint by agreement with
the teacher), trained on the task's own input ranges and on wider ones (`teacher_inputs`), at
its default size and at the teacher's parameter count (`student_parameters=teacher`).

Resumable: every run has its own folder, <out>/<task>/<run>/seed<n>. A run with results.json
is done and is not run again; one with checkpoints/last.ckpt resumes from it; any other is
started afresh. One training process at a time, one thread. Writes <out>/conversion.md (also
`python compare.py <out>` for the full comparison of everything trained).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's ntm, whichever one is installed

from ntm.experiment.compare import conversion_tables, load_runs  # noqa: E402
from ntm.experiment.results import RESULTS_FILE  # noqa: E402

#: task -> teachers, their students, and the wider training ranges (up to 2x the trained ones;
#: 6x stays beyond every training distribution).
PLAN = {
    "copy": (["lstm_baseline", "lstm"], ["mlp"], {"max_length": 40}),
    "associative_recall": (["lstm"], ["mlp", "transformer"], {"max_items": 12}),
}
MODELS = {
    "lstm_baseline": ["model=lstm_baseline"],
    "lstm": ["controller=lstm"],
    "mlp": ["controller=mlp"],
    "transformer": ["controller=transformer"],
}
#: Every run: no logger, no validation figures (they cost time and nobody looks at them here),
#: progress as lines in the run's train.log.
COMMON = ["logger=none", "threads=1", "callbacks.figures=null", "callbacks.progress.style=lines"]
#: Students train for a fixed budget (not until they solve the truth, which an imperfect
#: teacher never lets them) and keep the checkpoint that agrees best with the teacher.
STUDENT = [
    "callbacks.stop_when_solved=null",
    "callbacks.checkpoint.monitor=val/in_distribution/agreement",
    "callbacks.checkpoint.mode=max",
]
#: A few steps and tiny evaluations: the machinery end to end in minutes, no answer.
SMOKE = [
    "trainer.val_check_interval=3",
    "data.val_batches=1",
    "evaluation.sequences=4",
]


@dataclass
class Run:
    folder: Path
    overrides: list[str]

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoints" / "best.ckpt"


def plan(args: argparse.Namespace) -> list[Run]:
    """Every run, teachers before their students."""
    runs = []

    def model(name: str) -> list[str]:
        # A smoke test skips the NTM's compilation, which would take longer than its steps.
        uncompiled = ["model.compile=false"] if args.smoke and name != "lstm_baseline" else []
        return [*MODELS[name], *COMMON, *(SMOKE if args.smoke else []), *uncompiled]

    for task in args.tasks:
        teachers, students, wider = PLAN[task]
        teachers = [name for name in teachers if name in args.teachers]
        students = [name for name in students if name in args.students]
        for seed in args.seeds:
            for teacher_name in teachers:
                teacher = Run(
                    args.out / task / f"teacher_{teacher_name}" / f"seed{seed}",
                    [f"task={task}", f"seed={seed}", *model(teacher_name)]
                    + [f"trainer.max_steps={args.teacher_steps}"],
                )
                runs.append(teacher)
                for student in students:
                    for inputs in args.inputs:
                        for size in args.sizes:
                            name = f"{student}_from_{teacher_name}_{inputs}_inputs_{size}_size"
                            wide = "{" + ",".join(f"{k}:{v}" for k, v in wider.items()) + "}"
                            runs.append(
                                Run(
                                    args.out / task / name / f"seed{seed}",
                                    [f"task={task}", f"seed={seed}", *model(student)]
                                    + [*STUDENT, f"trainer.max_steps={args.student_steps}"]
                                    + [f"teacher={teacher.checkpoint}"]
                                    + ([f"teacher_inputs={wide}"] if inputs == "wider" else [])
                                    + (["student_parameters=teacher"] if size == "teacher" else []),
                                )
                            )
    return runs


def command(run: Run) -> list[str] | None:
    """The train.py command that finishes `run` (None when it is done), resuming from its last
    checkpoint where there is one; a folder without either is cleared for a fresh start."""
    if (run.folder / RESULTS_FILE).exists():
        return None
    last = run.folder / "checkpoints" / "last.ckpt"
    resume = [f"ckpt_path={last}"] if last.exists() else []
    if not resume and run.folder.exists():
        shutil.rmtree(run.folder)  # died before its first checkpoint: nothing to keep
    train = [sys.executable, str(ROOT / "train.py"), *run.overrides, *resume]
    return [*train, f"hydra.run.dir={run.folder}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the experiment's folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", choices=list(PLAN), default=list(PLAN))
    parser.add_argument("--teachers", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--students", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--inputs", nargs="+", choices=["own", "wider"], default=["own", "wider"])
    parser.add_argument(
        "--sizes", nargs="+", choices=["default", "teacher"], default=["default", "teacher"]
    )
    parser.add_argument("--teacher-steps", type=int, default=20_000, help="at most; stops solved")
    parser.add_argument("--student-steps", type=int, default=10_000, help="every student")
    parser.add_argument("--smoke", action="store_true", help="6 steps a run, tiny evaluations")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    args = parser.parse_args(argv)
    if args.smoke:
        args.teacher_steps = args.student_steps = 6
    args.out = args.out.resolve()
    runs = plan(args)
    for index, run in enumerate(runs, 1):
        where = f"[{index}/{len(runs)}] {run.folder.relative_to(args.out)}"
        if args.dry_run:
            print(shlex.join(["python", "train.py", *run.overrides, f"hydra.run.dir={run.folder}"]))
            continue
        argv_run = command(run)
        if argv_run is None:
            print(f"{where}: done before", flush=True)
            continue
        run.folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(run.folder / "console.txt", "a") as console:
            finished = subprocess.run(argv_run, stdout=console, stderr=subprocess.STDOUT, cwd=ROOT)
        if finished.returncode != 0:
            tail = (run.folder / "console.txt").read_text().splitlines()[-15:]
            print("\n".join([f"{where}: failed ({finished.returncode})", *tail]), file=sys.stderr)
            return 1
        print(f"{where}: {time.perf_counter() - start:.0f} s", flush=True)
    if args.dry_run:
        return 0
    table = conversion_tables(load_runs([args.out]), multiples={1, 2, 6})
    note = "Smoke test: a few steps a run; these numbers answer nothing.\n\n" if args.smoke else ""
    (args.out / "conversion.md").write_text(note + table)
    print(note + table)
    print(f"wrote {args.out / 'conversion.md'}; the full comparison: python compare.py {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
