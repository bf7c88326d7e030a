"""What a run promises when things go wrong: exact resume, no silent NaN, one-line errors for
bad input, outputs that survive a kill, DDP over two processes."""

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_training import CONFIGS, ROOT, compose_train

from ntm.experiment.callbacks import TrainingDiverged
from ntm.experiment.config import expand_aliases
from ntm.experiment.module import SequenceModule
from ntm.experiment.results import RunSummary, read
from ntm.experiment.run import train

#: A small run: few and short steps, validation and a checkpoint every 3 steps, no grids.
SMALL = [
    "debug=steps",
    "memory=small",
    "controller.hidden_size=16",
    "model.compile=false",
    "trainer.val_check_interval=3",
    "trainer.enable_progress_bar=false",
    "evaluation.enabled=false",
    "callbacks.figures=null",
]


def train_small(folder: Path, *overrides: str) -> RunSummary:
    return train(compose_train([*SMALL, *overrides], folder), folder)


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint)["state_dict"]


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders ended with the same summary metrics, weights and optimiser state."""
    assert (
        read(a / "summary.json", RunSummary).metrics == read(b / "summary.json", RunSummary).metrics
    )
    last_a, last_b = (torch.load(f / "checkpoints" / "last.ckpt") for f in (a, b))
    for name, tensor in last_a["state_dict"].items():
        assert torch.equal(tensor, last_b["state_dict"][name]), name
    state_a, state_b = (c["optimizer_states"][0]["state"] for c in (last_a, last_b))
    for index, moments in state_a.items():
        for name, tensor in moments.items():
            assert torch.equal(tensor, state_b[index][name]), (index, name)


def run_cli(script, *args, monkeypatch, capsys) -> tuple[int, str]:
    """``python <script>.py <args>`` in this process: its exit status and its stderr."""
    module = importlib.import_module(script)
    argv = [f"{script}.py", f"--config-path={CONFIGS}", *expand_aliases(list(args))]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        module.main()
        status = 0
    except SystemExit as exit:
        status = exit.code
    return status, capsys.readouterr().err


def assert_one_line_error(status, stderr, expected, code=2):
    """Exit status `code` and, as the last line of stderr, ``error: <expected>...``."""
    assert status == code and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith(f"error: {expected}")


# 1. Exact resume -------------------------------------------------------------------------


def test_a_resumed_run_continues_exactly(tmp_path):
    # memory_init=random draws from torch's global generator every batch: its state must
    # resume too, not only the data stream, the weights and the optimiser.
    random = "model.memory_init=random"
    whole = train_small(tmp_path / "whole", random, "trainer.max_steps=12")
    train_small(tmp_path / "half", random, "trainer.max_steps=6")
    last = tmp_path / "half" / "checkpoints" / "last.ckpt"
    resumed = train_small(tmp_path / "resumed", random, "trainer.max_steps=12", f"ckpt_path={last}")
    assert resumed.steps == whole.steps == 12
    assert resumed.sequences_seen == whole.sequences_seen == 12 * 8
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")  # equal, not close: CPU, eager


def test_last_checkpoint_is_the_latest_state_not_the_latest_best(tmp_path):
    # lr 0: validation never improves on the first, so best.ckpt is never written again
    train_small(tmp_path, "optimizer.lr=0", "trainer.max_steps=9")
    assert torch.load(tmp_path / "checkpoints" / "best.ckpt")["global_step"] == 3
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 9


def test_a_killed_run_leaves_whole_checkpoints_and_resumes_exactly(tmp_path):
    killed = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "train.py"), *expand_aliases(SMALL)]
    command += ["trainer.max_steps=100000", "trainer.val_check_interval=1"]
    process = subprocess.Popen(
        [*command, f"hydra.run.dir={killed}"],
        env=dict(os.environ, WANDB_MODE="disabled"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = killed / "checkpoints" / "last.ckpt"
    try:  # a checkpoint every step; kill it mid-run once a few are written
        deadline = time.monotonic() + 120
        while not (last.exists() and torch.load(last)["global_step"] >= 3):
            assert process.poll() is None and time.monotonic() < deadline, "run did not start"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    step = torch.load(last)["global_step"]  # whole: loads
    assert torch.load(killed / "checkpoints" / "best.ckpt")["global_step"] <= step
    end = [f"trainer.max_steps={step + 3}", "trainer.val_check_interval=1"]
    train_small(tmp_path / "resumed", *end, f"ckpt_path={last}")
    train_small(tmp_path / "whole", *end)
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")


# 2. Non-finite values ----------------------------------------------------------------------


def poison(monkeypatch, bad_steps):
    """Make the training loss NaN at the optimizer steps (0-based) in `bad_steps`."""
    original = SequenceModule.training_step

    def training_step(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if self.global_step in bad_steps else loss

    monkeypatch.setattr(SequenceModule, "training_step", training_step)


def test_nonfinite_updates_are_skipped_and_counted(tmp_path, monkeypatch):
    poison(monkeypatch, {2, 3})
    summary = train_small(tmp_path, "trainer.max_steps=6")
    assert summary.steps == 6
    assert summary.metrics["train/skipped_steps"] == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.metrics.values())
    assert all(t.isfinite().all() for t in weights(tmp_path / "checkpoints" / "last.ckpt").values())


def test_nonfinite_updates_in_a_row_stop_training_naming_the_last_checkpoint(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        poison(patch, range(4, 100))  # from the fifth update on
        with pytest.raises(TrainingDiverged) as stopped:
            train_small(
                tmp_path / "run",
                "trainer.max_steps=20",
                "trainer.val_check_interval=2",
                "callbacks.nonfinite.max_in_a_row=3",
            )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert str(stopped.value) == (
        "training: non-finite loss or gradients in 3 updates in a row (updates 5-7), each "
        f"skipped; the last checkpoint is {last} (step 6); resume with a lower optimizer.lr, "
        "or allow more with callbacks.nonfinite.max_in_a_row"
    )
    # Resuming from it with another learning rate: the configured one is used, and the count
    # of skipped updates (5 and 6, before the checkpoint) goes on.
    resumed = train_small(
        tmp_path / "resumed", "trainer.max_steps=10", "optimizer.lr=1e-4", f"ckpt_path={last}"
    )
    assert resumed.steps == 10 and resumed.metrics["train/skipped_steps"] == 2
    lr = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["optimizer_states"][0]
    assert lr["param_groups"][0]["lr"] == 1e-4


def test_training_that_keeps_diverging_exits_with_one_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    status, stderr = run_cli(
        "train",
        *SMALL,
        "optimizer.lr=1e30",  # the first update blows the weights up
        "trainer.max_steps=50",
        "callbacks.nonfinite.max_in_a_row=3",
        f"hydra.run.dir={run}",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    expected = "training: non-finite loss or gradients in 3 updates in a row (updates 2-4)"
    assert_one_line_error(status, stderr, expected, code=1)
    assert not (run / "summary.json").exists()
