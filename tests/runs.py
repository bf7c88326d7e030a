"""Helpers for tests that run training: the config `train.py` would compose, and train.py as a
subprocess."""

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from ntm.experiment.config import expand_aliases

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def compose_train(overrides, output_dir):
    """The config `python train.py <overrides>` would run, with Hydra's runtime set up."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=expand_aliases(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as in a real run: the job's config has no `hydra` node
    return cfg


def train_py(*args, cwd, env=None, timeout=300):
    """`python train.py <args>` in `cwd`, W&B disabled unless `env` says otherwise; never
    waits for input. Processes it starts that do not begin at train.py (submitit's jobs) import
    this checkout too, whatever copy of the project is installed."""
    env = env or dict(os.environ, WANDB_MODE="disabled", HYDRA_FULL_ERROR="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
