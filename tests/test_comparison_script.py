"""scripts/comparison.py: runs what is missing, skips what is done, then compares."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_comparison_runs_once_and_resumes_by_skipping_finished_runs(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "scripts" / "comparison.py"),
        "--tasks=copy",
        "--models=lstm_baseline",
        "--seeds=0",
        f"--runs={tmp_path / 'runs'}",
        f"--out={tmp_path / 'out'}",
        "--overrides",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "evaluation.grid={length:[3]}",
        "evaluation.sequences=4",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "0 runs already done, 1 to run" in first.stdout
    assert "copy lstm_baseline seed 0: done" in first.stdout
    run = tmp_path / "runs" / "copy" / "lstm_baseline" / "seed0"
    assert (run / "results.json").exists()
    log = (run / "train.log").read_text()  # Hydra's log, with the progress lines
    assert "step 2/2  val/in_distribution/bit_errors" in log
    assert "Total params" not in log  # Lightning's print: no second writer in Hydra's file
    assert "Total params" in (run / "console.txt").read_text()
    assert "| lstm_baseline | 1 |" in (tmp_path / "out" / "comparison.md").read_text()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "1 runs already done, 0 to run" in again.stdout
