"""W&B offline with no account: a training run and a comparison, read back from the run files
that `wandb sync` would upload."""

import json
import os

import pytest
import wandb
from runs import train_py
from wandb_records import read_run

import compare
from ntm.experiment.dashboard import use_wandb_offline_without_credentials
from ntm.experiment.results import RunSummary, read


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """W&B as for a new user: no WANDB_MODE, no key, no ~/.netrc."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))


def test_wandb_goes_offline_without_credentials(no_credentials, monkeypatch):
    assert use_wandb_offline_without_credentials() == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert use_wandb_offline_without_credentials() == "online"


def chart(run, key):
    """The custom chart W&B stores in the run config for a logged `wandb.plot` chart."""
    return run.config["_wandb"]["visualize"][key]["panel_config"]


def test_training_and_comparison_runs_make_the_dashboard(no_credentials, tmp_path):
    result = train_py(
        "debug=steps",
        "model.compile=false",
        "logger=wandb",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "evaluation.grid.length=[3,5]",
        "evaluation.capacity.slots=[8,16]",
        "evaluation.capacity.grid.length=[3,5]",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (folder,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    assert read(tmp_path / "run" / "summary.json", RunSummary).steps == 2
    # One start-up line says where both are.
    assert f"run folder: {tmp_path}/run | W&B: offline, upload with: wandb sync {folder}" in (
        result.stdout
    )

    run = read_run(folder)
    # Grouped by task and model (one line per model on the project page), named, tagged, and
    # with both in the config for group-by and filters.
    assert run.run.run_group == "copy/ntm-lstm" and run.run.display_name == "copy/ntm-lstm/seed0"
    assert run.run.job_type == "train" and set(run.run.tags) == {"ntm-lstm", "copy", "seed0"}
    assert run.config["task_name"] == "copy" and run.config["model_label"] == "ntm-lstm"
    assert run.config["model"]["label"] == "ntm-lstm"  # the whole resolved config is there too
    # Sequences seen is every metric's default x-axis; the grids' curves have their own.
    assert run.metrics["*"] == "sequences"
    assert run.metrics["generalisation/bit_errors"] == "generalisation/length"
    assert run.metrics["capacity/bit_errors/8_slots"] == "capacity/length"
    assert run.metrics["capacity/bit_errors/16_slots"] == "capacity/length"
    validations = [row for row in run.history if "val/in_distribution/bit_errors" in row]
    assert validations and all(row["sequences"] == 16 for row in validations)  # 2 steps of 8
    curve = [row for row in run.history if "generalisation/length" in row]
    assert [row["generalisation/length"] for row in curve] == [3, 5]
    assert all(isinstance(row["generalisation/bit_errors"], float) for row in curve)
    assert [row["capacity/length"] for row in run.history if "capacity/length" in row] == [3, 5]
    # Each grid also as one native line-series chart of the run, a table and the figure.
    for name in ("generalisation", "capacity"):
        assert chart(run, f"evaluation/{name}")["panelDefId"] == "wandb/lineseries/v0"
        assert run.summary[f"evaluation/{name}_table"]["_type"] == "table-file"
        assert run.summary[f"evaluation/{name}_figure"]["_type"] == "image-file"
    assert run.summary["steps"] == 2 and run.summary["solved"] is False
    assert "capacity/longest_solved/8" in run.summary

    # The comparison of the runs below a folder: a run of its own overlaying the models.
    assert compare.main([str(tmp_path / "run"), "--out", str(tmp_path / "cmp"), "--wandb"]) == 0
    # In a process that lives on, W&B's service may still hold the run file half-written; shutting
    # it down flushes and closes the file, as the end of `python compare.py` would.
    wandb.teardown()
    (folder,) = (tmp_path / "cmp" / "wandb").glob("offline-run-*")
    comparison = read_run(folder)
    assert comparison.run.job_type == "comparison"
    for name in ("generalisation", "capacity"):
        panel = chart(comparison, f"copy/{name}")
        assert panel["panelDefId"] == "wandb/lineseries/v0"
    table = comparison.summary["copy/table"]
    assert table["_type"] == "table-file" and table["nrows"] == 1
    series = json.loads(
        (folder / "files" / comparison.summary["copy/generalisation_table"]["path"]).read_text()
    )
    assert {row[series["columns"].index("lineKey")] for row in series["data"]} == {"ntm-lstm"}
