"""What a run promises when things go wrong: exact resume, no silent NaN, one-line errors for
bad input, outputs that survive a kill, DDP over two processes."""

import builtins
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import open_dict
from test_training import CONFIGS, ROOT, compose_train

import compare
from ntm.experiment import results
from ntm.experiment.callbacks import BestCheckpoint, TrainingDiverged
from ntm.experiment.checkpoints import AtomicCheckpointIO
from ntm.experiment.config import expand_aliases
from ntm.experiment.module import SequenceModule
from ntm.experiment.results import SEQUENCES, EvaluationResults, RunSummary, read
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


def test_a_run_resumed_at_its_cap_records_the_metrics_of_its_weights(tmp_path):
    """No training step is left, so no validation runs in the resumed session: the summary
    must still say how good the weights are (it was empty, and the run counted unsolved)."""
    first = train_small(tmp_path / "run", "trainer.max_steps=6")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    again = train_small(tmp_path / "run", "trainer.max_steps=6", f"ckpt_path={last}")
    key = "val/in_distribution/bit_errors"
    assert again.steps == 6
    assert again.metrics[key] == pytest.approx(first.metrics[key])


def test_last_checkpoint_is_the_latest_state_not_the_latest_best(tmp_path):
    # "best" by the sequences seen, lowest first: never improves on the first validation
    train_small(tmp_path, "trainer.max_steps=9", f"callbacks.checkpoint.monitor={SEQUENCES}")
    assert torch.load(tmp_path / "checkpoints" / "best.ckpt")["global_step"] == 3
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 9


def test_the_best_checkpoint_of_equals_is_the_one_with_the_lowest_loss(tmp_path):
    best = BestCheckpoint(dirpath=tmp_path, monitor="errors", mode="min", tie_break="loss")
    trainer = SimpleNamespace(
        callback_metrics={}, strategy=SimpleNamespace(reduce_boolean_decision=lambda d: d)
    )

    def offer(errors: float, loss: float) -> bool:  # one validation: is it saved?
        trainer.callback_metrics = {"errors": torch.tensor(errors), "loss": torch.tensor(loss)}
        saved = best.check_monitor_top_k(trainer, torch.tensor(errors))
        if saved:  # as ModelCheckpoint records a saved one
            best.best_k_models, best.kth_best_model_path = {"best": torch.tensor(errors)}, "best"
        return saved

    assert offer(1.0, 0.5)  # the first
    assert offer(0.0, 0.4)  # fewer errors
    assert not offer(0.0, 0.45)  # as few, higher loss
    assert offer(0.0, 0.3)  # as few, lower loss
    assert not offer(0.5, 0.01)  # more errors, whatever the loss
    restored = BestCheckpoint(dirpath=tmp_path, monitor="errors", tie_break="loss")
    restored.load_state_dict(best.state_dict())  # resumed runs go on comparing the same way
    assert restored.best_tie_break == pytest.approx(0.3)
    plain = ModelCheckpoint(dirpath=tmp_path, monitor="errors", mode="min")
    assert best.state_key == plain.state_key  # checkpoints from before it resume its state


def test_training_stops_when_solved_or_as_long_after_as_asked(tmp_path):
    # Solved at the first validation (step 3, 24 sequences at batch 8) under so loose a bar.
    stopped = train_small(tmp_path / "stopped", "solved_below=1000", "trainer.max_steps=30")
    assert (stopped.solved, stopped.solved_at, stopped.steps) == (True, 24, 3)
    assert stopped.sequences_seen == 24
    # 40 more sequences: at the first validation at least that far on (step 9, 72 sequences)
    on = train_small(
        tmp_path / "on", "solved_below=1000", "trainer.max_steps=30", "train_after_solved=40"
    )
    assert (on.solved, on.solved_at, on.steps, on.sequences_seen) == (True, 24, 9, 72)
    saved = torch.load(tmp_path / "on" / "checkpoints" / "last.ckpt")["callbacks"]
    assert saved["StopWhenSolved"] == {"solved_at": 24}  # a resumed run knows it
    never = train_small(tmp_path / "never", "solved_below=0", "trainer.max_steps=6")
    assert (never.solved, never.solved_at, never.steps) == (False, None, 6)
    with pytest.raises(ValueError, match="no metric 'val/nope' was logged"):
        train_small(tmp_path / "typo", "callbacks.stop_when_solved.monitor=val/nope")


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
    # Lightning writes best.ckpt before last.ckpt for the same step: a kill between the two
    # leaves best one step ahead, never more
    assert torch.load(killed / "checkpoints" / "best.ckpt")["global_step"] <= step + 1
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
    summary = read(tmp_path / "run" / "summary.json", RunSummary)  # recorded, not lost
    assert summary.diverged and not summary.solved and summary.steps == 6
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
        "evaluation.enabled=true",
        "callbacks.nonfinite.max_in_a_row=3",
        f"hydra.run.dir={run}",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    expected = "training: non-finite loss or gradients in 3 updates in a row (updates 2-4)"
    assert_one_line_error(status, stderr, expected, code=1)
    assert read(run / "summary.json", RunSummary).diverged
    # the best checkpoint (step 3, the only validation) is evaluated like any finished run's
    assert read(run / "results.json", EvaluationResults).checkpoint.endswith("best.ckpt")


# 3. One-line errors ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """last.ckpt of one-step runs: copy with the LSTM (the runs below), another task,
    another controller; and a corrupt copy of the first."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for name, overrides in {
        "copy": [],
        "associative_recall": ["task=associative_recall"],
        "mlp": ["controller=mlp"],
    }.items():
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("WANDB_MODE", "disabled")
            train_small(
                folder / name, "trainer.max_steps=1", "trainer.val_check_interval=1", *overrides
            )
        paths[name] = folder / name / "checkpoints" / "last.ckpt"
    good = paths["copy"].read_bytes()
    paths["corrupt"] = folder / "corrupt.ckpt"
    paths["corrupt"].write_bytes(good[: len(good) // 2])
    # weights that do not fit the model their own config describes
    mixed = torch.load(paths["copy"])
    mixed["hyper_parameters"]["config"]["model"] = torch.load(paths["mlp"])["hyper_parameters"][
        "config"
    ]["model"]
    paths["mixed"] = folder / "mixed.ckpt"
    torch.save(mixed, paths["mixed"])
    return paths


def test_head_trace_prints_every_step_of_a_checkpoint(checkpoints, capsys):
    from scripts import head_trace

    assert head_trace.main([str(checkpoints["copy"]), "length=3", "--slots", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("7 steps, 16 slots: ")  # 3 in, the delimiter, 3 out
    assert lines[1] == "step  read0: slot (weight)  write0: slot (weight)"
    assert [line.split()[0] for line in lines[2:]] == [str(step) for step in range(7)]
    with pytest.raises(SystemExit):  # argparse's one-line error
        head_trace.main([str(checkpoints["copy"]), "length=three"])
    assert "difficulty settings are key=integer" in capsys.readouterr().err


def test_memory_rows_tells_leaked_writes_from_the_starting_value(checkpoints, capsys):
    from test_model import small_ntm

    from scripts import memory_rows

    torch.manual_seed(0)
    inputs = torch.rand(4, 6, 5)  # (b, t, input_size) of small_ntm
    for start, held in ((1e3, True), (1e-9, False)):
        model = small_ntm(memory_init_value=start).eval()
        written, change = memory_rows.barely_written_rows(model, inputs, fraction=0.5)
        assert written.shape == change.shape == (4, model.memory_slots // 2)
        # An untrained head spreads its writes (a third of a write per row here, half erased):
        # a large start still outweighs them, a tiny one is outweighed a millionfold.
        assert bool((change < 1).all()) if held else bool((change > 1e6).all())
    assert memory_rows.main([str(checkpoints["copy"]), "length=3", "--steps", "4"]) == 0
    assert capsys.readouterr().out.startswith("start 1e-06, 4 steps: the least-written 0.5 of")
    with pytest.raises(SystemExit):  # argparse's one-line error
        memory_rows.main([str(checkpoints["copy"]), "--fraction", "0"])
    assert "--fraction must be in (0, 1]" in capsys.readouterr().err


def test_early_errors_splits_runs_by_their_start(tmp_path, capsys):
    from scripts import early_errors

    def fake_run(name: str, errors: list[float], solved_at: int | None) -> None:
        log = tmp_path / "sweep" / name / "csv" / "version_0" / "metrics.csv"
        log.parent.mkdir(parents=True)
        rows = [f"{1000 * (i + 1)},{e}" for i, e in enumerate(errors)]  # at 1,000, 2,000, ...
        log.write_text("sequences,train/bit_errors\n" + "\n".join(rows) + "\n")
        summary = results.RunSummary(
            "repeat_copy", "ntm-lstm", 0, 10, 5, 5000, 1.0, solved_at is not None, 0.05, {},
            solved_at=solved_at,
        )  # fmt: skip
        results.write(summary, log.parents[2] / results.SUMMARY_FILE)

    fake_run("seed0", [30, 2, 1, 3, 50], 9000)  # window [2,000, 5,000): median 2
    fake_run("seed1", [1, 20, 9, 30, 0], None)  # median 20
    fake_run("seed2", [40, 8, 6, 7, 0], 900_000)  # median 7, solved only past the cap
    argv = [str(tmp_path / "sweep"), "--window", "2000", "5000", "--below", "5", "--cap", "10000"]
    assert early_errors.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["2.00", "7.00", "20.00"]
    assert "solved at 9,000" in lines[1] and "not solved" in lines[2]
    assert lines[4:] == ["below 5: 1 of 1 solved", "at or above 5: 0 of 2 solved"]
    with pytest.raises(SystemExit):  # argparse's one-line error
        early_errors.main([str(tmp_path / "sweep"), "--window", "5000", "2000"])
    assert "--window needs 0 <= FIRST < LAST" in capsys.readouterr().err


TRAIN_ERRORS = {
    "optimizer.lr=-1": "optimizer: Invalid learning rate: -1",
    "optimizer.lr=abc": "optimizer.lr: expected a number, got 'abc'",
    "seed=abc": "seed: expected an integer, got 'abc'",
    "seed=-1": "seed: expected an integer from 0 to 2**32 - 1, got -1",
    "flush_denormal=abc": "flush_denormal: expected true or false, got 'abc'",
    "flush_denormal=null": "flush_denormal: expected true or false, got None",
    "data.batch_size=abc": "data.batch_size: expected an integer, got 'abc'",
    "model.memory_slots=12x": "model.memory_slots: expected an integer, got '12x'",
    "model.memory_width=1.5": "model.memory_width: expected an integer, got 1.5",
    "evaluation.enabled=true evaluation.grid.length=[0]": (
        "evaluation.grid: min_length must be >= 1, got min_length=0"
    ),
}


@pytest.mark.parametrize(("arguments", "message"), TRAIN_ERRORS.items())
def test_bad_values_fail_with_one_line(arguments, message, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    status, stderr = run_cli(
        "train",
        *SMALL,
        *arguments.split(),
        f"hydra.run.dir={run}",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert_one_line_error(status, stderr, message)
    assert not (run / "summary.json").exists() and not (run / "checkpoints").exists()


RESUME_ERRORS = {
    "missing": ([], "ckpt_path: no such file: {path}"),
    "corrupt": ([], "ckpt_path: {path} is not a readable checkpoint ("),
    "associative_recall": (
        [],
        "ckpt_path: {path} holds ntm-lstm on AssociativeRecallTask, which does not fit this "
        "run's ntm-lstm on CopyTask: model.cell.controller.cells.0.weight_ih is (64, 16), not "
        "(64, 17)",
    ),
    "mlp": ([], "ckpt_path: {path} holds ntm-mlp on CopyTask, which does not fit this run's "),
    "copy": (
        ["optimizer=rmsprop"],
        "ckpt_path: {path} was trained with torch.optim.Adam, this run uses "
        "torch.optim.RMSprop: resume with the same optimizer",
    ),
}


@pytest.mark.parametrize(("name", "case"), RESUME_ERRORS.items(), ids=list(RESUME_ERRORS))
def test_bad_checkpoints_fail_with_one_line(name, case, checkpoints, tmp_path, monkeypatch, capsys):
    overrides, message = case
    path = checkpoints.get(name, tmp_path / "missing.ckpt")
    run = tmp_path / "run"
    status, stderr = run_cli(
        "train",
        *SMALL,
        *overrides,
        f"ckpt_path={path}",
        f"hydra.run.dir={run}",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert_one_line_error(status, stderr, message.format(path=path))
    assert not (run / "summary.json").exists() and not (run / "checkpoints").exists()


EVALUATE_ERRORS = {
    "no path": (None, [], "ckpt_path: which checkpoint? python evaluate.py ckpt_path=<file>"),
    "missing": ("missing", [], "ckpt_path: no such file: {path}"),
    "corrupt": ("corrupt", [], "ckpt_path: {path} is not a readable checkpoint ("),
    "mixed": (
        "mixed",
        [],
        "ckpt_path: {path}'s weights do not fit the model its config describes (ntm-mlp on "
        "CopyTask): no ",
    ),
    "sequences": (
        "copy",
        ["evaluation.sequences=abc"],
        "evaluation.sequences: expected an integer, got 'abc'",
    ),
}


@pytest.mark.parametrize(("name", "case"), EVALUATE_ERRORS.items(), ids=list(EVALUATE_ERRORS))
def test_evaluate_fails_with_one_line(name, case, checkpoints, tmp_path, monkeypatch, capsys):
    checkpoint, overrides, message = case
    path = checkpoints.get(checkpoint, tmp_path / "missing.ckpt")
    arguments = [*overrides, f"hydra.run.dir={tmp_path / 'evaluation'}"]
    if checkpoint:
        arguments.append(f"ckpt_path={path}")
    status, stderr = run_cli("evaluate", *arguments, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(status, stderr, message.format(path=path))
    assert not (tmp_path / "evaluation" / "results.json").exists()


def test_compare_refuses_empty_missing_and_unreadable_folders(tmp_path, capsys):
    def fails_with(message, *folders):
        assert compare.main([str(f) for f in folders]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]

    empty = tmp_path / "empty"
    empty.mkdir()
    fails_with(f"no run folders (summary.json) under {[empty]}", empty)
    fails_with(f"{tmp_path / 'nowhere'}: no such folder", tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    fails_with(f"{tmp_path / 'file'}: not a folder", tmp_path / "file")
    garbled = tmp_path / "garbled" / "run"
    garbled.mkdir(parents=True)
    (garbled / "summary.json").write_bytes(b"\xff\xfe{")
    fails_with(
        f"{garbled / 'summary.json'}: not a readable results file (UnicodeDecodeError)",
        tmp_path / "garbled",
    )
    if os.geteuid() == 0:
        pytest.skip("root reads any folder: cannot test an unreadable one")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    fails_with(f"{locked}: cannot read it (permission denied)", locked)


# 4. Outputs that survive -------------------------------------------------------------------


def test_records_are_replaced_whole_and_readable_by_others(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")

    def dies_halfway(file):
        file.write(b"half")
        raise KeyboardInterrupt  # e.g. Ctrl-C between writing and renaming

    with pytest.raises(KeyboardInterrupt):
        results.replace_atomically(path, dies_halfway)
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
    results.replace_atomically(path, lambda file: file.write(b"new"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_checkpoint_save_that_dies_leaves_the_last_one(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, path)

    def dies_halfway(checkpoint, file):
        file.write(b"PK\x03\x04 half a zip archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["global_step"] == 1 and list(tmp_path.iterdir()) == [path]


def test_checkpoints_are_never_written_in_place(tmp_path, monkeypatch):
    # Lightning's own writer goes through the temp folder; where that is on another
    # filesystem it copies over the old checkpoint, and a kill mid-copy leaves half a file.
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a temp folder on another filesystem than the run (/dev/shm)")
    monkeypatch.setattr(tempfile, "tempdir", str(other))
    written = []

    def recording_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+"):
            written.append(Path(file).name)
        return real_open(file, mode, *args, **kwargs)

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", recording_open)
    train_small(tmp_path, "trainer.max_steps=6")
    monkeypatch.undo()
    assert not [name for name in written if name.endswith(".ckpt")], written
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 6


def test_only_rank_zero_writes_the_records(tmp_path, monkeypatch):
    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda self: False))
    train_small(tmp_path, "trainer.max_steps=1", "evaluation.enabled=true")
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "results.json").exists()


def run_folder(overrides: list[str]) -> str:
    """The run folder `python train.py <overrides>` would get."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.choices.task = "copy"
    HydraConfig.instance().set_config(cfg)
    return str(cfg.hydra.run.dir)


def test_runs_started_at_the_same_moment_get_their_own_folders(monkeypatch):
    import hydra.core.utils

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 1, 12, 0, 0, 123456)

    monkeypatch.setattr(hydra.core.utils, "datetime", Frozen)
    folders = set()
    for pid in (1000, 1001):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        folders.add(run_folder(["model.compile=false"]))
    assert len(folders) == 2, folders
    assert all(f.startswith("outputs/copy/2026-01-01_12-00-00-123456") for f in folders)


# 5. DDP --------------------------------------------------------------------------------------


def test_ddp_on_two_processes_splits_the_data_and_writes_one_summary(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("needs torch.distributed with the gloo backend")
    run, probe = tmp_path / "run", tmp_path / "probe"
    steps, batch = 4, 8
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *expand_aliases(SMALL),
            "trainer=ddp",
            "trainer.accelerator=cpu",
            f"trainer.max_steps={steps}",
            "trainer.val_check_interval=2",
            "data.val_batches=2",  # one batch for each rank
            "+callbacks.probe._target_=probes.BatchProbe",
            f"+callbacks.probe.folder={probe}",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        env=dict(
            os.environ,
            WANDB_MODE="disabled",
            PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(len(r["batches"]) == steps for r in ranks)
    assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"])  # different data
    assert ranks[0]["val"] == ranks[1]["val"]  # validation averaged over both ranks' shares
    summary = read(run / "summary.json", RunSummary)
    assert summary.steps == steps and summary.sequences_seen == steps * batch * 2
    assert sorted(p.name for p in run.glob("*.json")) == ["summary.json"]
    assert not list(run.glob(".summary.json.*"))  # no temporary file left behind
