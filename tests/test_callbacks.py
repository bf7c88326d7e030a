"""Progress as people read it: one live bar in a terminal, log lines elsewhere."""

import logging

import pytest
from lightning.pytorch.callbacks import TQDMProgressBar
from runs import compose_train

from ntm.experiment.callbacks import LiveBar, LogLines, progress
from ntm.experiment.run import train

SHORT = [
    "debug=steps",
    "model.compile=false",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "evaluation.enabled=false",
    "callbacks.figures=null",
]


def test_the_style_follows_the_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert isinstance(progress(), LiveBar)
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert isinstance(progress(every_n_steps=7), LogLines) and progress().every_n_steps == 200
    assert isinstance(progress("bar"), TQDMProgressBar)
    with pytest.raises(ValueError, match="auto, bar or lines"):
        progress("fancy")


def test_log_lines_every_n_steps_and_after_each_validation(tmp_path, caplog, capsys):
    cfg = compose_train([*SHORT, "callbacks.progress.style=lines"], tmp_path)
    cfg.callbacks.progress.every_n_steps = 2
    with caplog.at_level(logging.INFO):
        train(cfg, tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "ntm.experiment.callbacks"]
    assert [line.split("  ")[0] for line in lines] == ["step 2/4"] * 2 + ["step 4/4"] * 2
    assert lines[0].startswith(f"step 2/4  {2 * cfg.data.batch_size} sequences  train/loss ")
    assert lines[1].startswith("step 2/4  val/in_distribution/bit_errors ")
    assert "\r" not in capsys.readouterr().out  # no progress bar alongside
    start = [r.getMessage() for r in caplog.records if r.getMessage().startswith("run folder")]
    assert start == [f"run folder: {tmp_path} | W&B: off"]


def test_the_bar_is_a_single_line(tmp_path, capsys):
    train(compose_train([*SHORT, "callbacks.progress.style=bar"], tmp_path), tmp_path)
    out = capsys.readouterr().out
    assert "validating" in out and "Validation" not in out  # one bar, relabelled meanwhile
    last = out.rsplit("\r", 1)[-1]
    assert last.startswith("training: 100%") and "4/4" in last
    assert "val/in_distribution=" in last and "v_num" not in last
