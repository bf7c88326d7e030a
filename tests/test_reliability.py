"""What a run promises when things go wrong: exact resume, no silent NaN, one-line errors for
bad input, outputs that survive a kill, DDP over two processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from test_training import ROOT, compose_train

from ntm.experiment.config import expand_aliases
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
