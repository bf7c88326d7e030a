"""Sweeps beyond one process: Hydra's submitit launcher (the local executor standing in for
SLURM) and Lightning DDP inside a sweep."""

import pytest
from runs import train_py

from ntm.experiment.compare import load_runs


def test_submitit_fans_a_sweep_out_into_jobs(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install .[cluster]")
    sweep = tmp_path / "sweep"
    result = train_py(
        "-m",
        "controller=lstm,mlp",  # short names, expanded before the job function is pickled
        "hydra/launcher=submitit_local",
        "debug=fast",
        "model.compile=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = load_runs([sweep])
    assert sorted(run.summary.model for run in runs) == ["ntm-lstm", "ntm-mlp"]
    # Each job ran in its own process and logged lines, not a bar's carriage returns.
    logs = sorted(sweep.glob(".submitit/*/*_log.out"))
    assert len(logs) == 2
    for log in logs:
        text = log.read_text()
        assert "run folder: " in text and "step 1/1  val/in_distribution/bit_errors" in text
        assert "\r" not in text


@pytest.mark.slow
def test_ddp_jobs_of_a_sweep_each_train_on_two_processes(tmp_path):
    sweep = tmp_path / "sweep"
    result = train_py(
        "-m",
        "seed=0,1",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "debug=steps",
        "model.compile=false",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "evaluation.enabled=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = load_runs([sweep])
    assert sorted(run.summary.seed for run in runs) == [0, 1]
    for run in runs:  # two ranks of 8 sequences a step; the second rank ran in the job's folder
        assert run.summary.sequences_seen == 2 * 2 * 8
        assert (run.folder / "train_ddp_process_1.log").exists()
    assert not (tmp_path / "outputs").exists()  # no rank wrote a run of its own elsewhere
