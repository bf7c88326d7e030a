"""The training pipeline: configs compose, every model x task runs, resume, errors, W&B."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from ntm.training import ConfigError, build, run, use_wandb_offline_without_credentials

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TASKS = ["copy", "repeat_copy", "associative_recall"]
CONTROLLERS = ["lstm", "mlp", "transformer"]


def compose_train(overrides, output_dir):
    """The config `python train.py <overrides>` would run, with Hydra's runtime set up."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as in a real run: the job's config has no `hydra` node
    return cfg


def options(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override",
    [
        f"{group}={option}"
        for group in (
            "task",
            "controller",
            "model",
            "memory",
            "optimizer",
            "trainer",
            "logger",
            "experiment",
            "debug",
        )
        for option in options(group)
    ],
)
def test_every_config_option_composes_and_instantiates(override, tmp_path):
    cfg = compose_train([override, "compile=false"], tmp_path)
    task, datamodule, module = build(cfg, tmp_path)
    assert module.model(torch.zeros(2, 3, task.input_size))[0].shape[-1] == task.output_size
    instantiate(cfg.optimizer)(module.parameters())
    if cfg.logger and "_target_" in cfg.logger and "TensorBoard" not in cfg.logger._target_:
        os.environ["WANDB_MODE"] = "disabled"
        instantiate(cfg.logger)
    if cfg.trainer.accelerator == "cpu":  # gpu and ddp trainers need the hardware
        instantiate(cfg.trainer, logger=False)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", [*CONTROLLERS, "lstm_baseline"])
def test_fast_dev_run_every_model_and_task(task, model, tmp_path):
    overrides = [f"task={task}", "debug=fast"]
    overrides += ["model=lstm_baseline"] if model == "lstm_baseline" else [f"controller={model}"]
    summary = run(compose_train(overrides, tmp_path), tmp_path)
    assert summary["steps"] == 1
    assert all(torch.isfinite(torch.tensor(v)) for v in summary["metrics"].values())


def test_short_training_lowers_the_loss_and_resume_continues(tmp_path):
    overrides = [
        "debug=steps",
        "memory=small",
        "trainer.max_steps=60",
        "optimizer.lr=3e-3",
        "trainer.val_check_interval=30",
        "figures=true",
        "evaluation.grid.length=[5,10]",
        "evaluation.capacity.slots=[16,32]",
        "evaluation.capacity.grid.length=[5]",
    ]
    cfg = compose_train(overrides, tmp_path)
    summary = run(cfg, tmp_path)
    assert summary["steps"] == 60
    first = run(
        compose_train([*overrides, "trainer.max_steps=1"], tmp_path / "one"), tmp_path / "one"
    )
    assert summary["metrics"]["train/loss"] < first["metrics"]["train/loss"]
    assert list((tmp_path / "figures").glob("in_distribution_step*.png"))
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["length"] for r in results["generalisation"]["rows"]] == [5, 10]
    assert [r["memory_slots"] for r in results["capacity"]["rows"]] == [16, 32]
    assert (tmp_path / "generalisation.png").stat().st_size > 1000
    assert (tmp_path / "capacity.png").stat().st_size > 1000

    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last)  # plain values only: loads with weights_only=True
    assert checkpoint["global_step"] == 60
    resumed_dir = tmp_path / "resumed"
    resumed = run(
        compose_train([*overrides, "trainer.max_steps=70", f"ckpt_path={last}"], resumed_dir),
        resumed_dir,
    )
    assert resumed["steps"] == 70
    assert resumed["sequences_seen"] == 70 * cfg.data.batch_size

    # standalone evaluation of the checkpoint, with a resized memory
    (tmp_path / "results.json").unlink()
    evaluated = subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            str(last),
            "evaluation.grid.length=[3]",
            "evaluation.capacity.slots=[64]",
            "evaluation.sequences=4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["length"] for r in results["generalisation"]["rows"]] == [3]
    assert [r["memory_slots"] for r in results["capacity"]["rows"]] == [64]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("memory.read_heads=0", "at least one read and one write head"),
        ("memory.width=0", "memory_width must be >= 1"),
        ("task.min_length=5", None),  # fine on its own: min 5 <= max 20
        ("task.min_length=30", "min_length"),
        ("task.max_length=-1", "max_length"),
    ],
)
def test_bad_sizes_fail_before_training_with_one_message(override, message, tmp_path):
    cfg = compose_train([override, "debug=fast"], tmp_path)
    if message is None:
        build(cfg, tmp_path)
        return
    with pytest.raises(ConfigError, match=message):
        build(cfg, tmp_path)


def test_validation_longer_than_memory_warns(tmp_path):
    cfg = compose_train(["memory.slots=16", "debug=fast"], tmp_path)
    with pytest.warns(UserWarning, match="needs 40 memory slots but the memory has 16"):
        build(cfg, tmp_path)


def _train_py(*args, cwd):
    env = dict(os.environ, WANDB_MODE="disabled", HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_errors_are_one_clear_message(tmp_path):
    unknown = _train_py("controller=gru", cwd=tmp_path)
    assert unknown.returncode != 0
    assert "controller/gru" in unknown.stderr and "lstm" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    bad = _train_py("debug=fast", "memory.write_heads=0", cwd=tmp_path)
    assert bad.returncode == 2
    assert "error: model: " in bad.stderr and "write head" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_wandb_goes_offline_without_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))
    assert use_wandb_offline_without_credentials() == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert use_wandb_offline_without_credentials() == "online"


def test_offline_wandb_run_writes_a_syncable_run(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), NETRC=str(tmp_path / "missing"))
    env.pop("WANDB_MODE", None)
    env.pop("WANDB_API_KEY", None)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "debug=steps",
            "logger=wandb",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "evaluation.grid.length=[3]",
            "evaluation.capacity.slots=[8]",
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2
