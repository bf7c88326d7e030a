"""Training from a Hydra config: ``python train.py`` calls `run`.

Data flows one way: config -> task (sizes) -> model -> LightningModule -> trainer -> results.
The task and data module are built from their `_target_`s, so `ntm` never imports `tasks`.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ntm.lightning import SequenceModule

log = logging.getLogger(__name__)
# Lightning's own use of a torch API it has not caught up with; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


class ConfigError(ValueError):
    """A configuration that cannot train; the message says what to change."""


def use_wandb_offline_without_credentials() -> str:
    """Make W&B run offline (no prompt; `wandb sync` uploads later) unless WANDB_MODE is set or
    credentials exist. Returns the mode in force."""
    if "WANDB_MODE" in os.environ:
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            has_key = netrc.netrc().authenticators("api.wandb.ai") is not None
        except (FileNotFoundError, netrc.NetrcParseError):
            has_key = False
    if not has_key:
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")


def _instantiate(node: Any, what: str, **kwargs: Any) -> Any:
    """instantiate() with the cause of a failure as one readable line."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"{what}: {cause}") from None
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{what}: {error}") from None


def build(cfg: DictConfig, output_dir: Path | None = None) -> tuple[Any, Any, SequenceModule]:
    """Task, data module and LightningModule from a composed config (nothing trained yet)."""
    task = _instantiate(cfg.task, "task")
    validation = OmegaConf.to_container(cfg.validation, resolve=True)
    if "in_distribution" not in validation:
        raise ConfigError("validation needs a set named 'in_distribution' (checkpoints watch it)")
    datamodule = _instantiate(cfg.data, "data", task=task, val_sets=validation)
    model = _instantiate(
        cfg.model, "model", input_size=task.input_size, output_size=task.output_size
    )
    slots = getattr(model, "memory_slots", None)
    for name, difficulty in validation.items():
        needed = task.memory_needed(**difficulty)
        if slots is not None and needed > slots:
            warnings.warn(
                f"validation set {name!r} needs {needed} memory slots but the memory has "
                f"{slots}: expect errors there (this is what capacity experiments measure)",
                stacklevel=2,
            )
    module = SequenceModule(
        model=model,
        optimizer=_instantiate(cfg.optimizer, "optimizer"),
        val_set_names=datamodule.val_set_names,
        figure_dir=output_dir / "figures" if output_dir is not None and cfg.figures else None,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    return task, datamodule, module


def run(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Train as `cfg` says, write `summary.json` into `output_dir`, and return the summary."""
    output_dir = Path(output_dir)
    torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task, datamodule, module = build(cfg, output_dir)

    loggers = []
    if cfg.get("logger") and "_target_" in cfg.logger:
        if "Wandb" in cfg.logger._target_:
            log.info("W&B mode: %s", use_wandb_offline_without_credentials())
        loggers.append(_instantiate(cfg.logger, "logger"))
    callbacks = [_instantiate(c, "callback") for c in cfg.get("callbacks", {}).values()]
    trainer = _instantiate(
        cfg.trainer,
        "trainer",
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(output_dir),
    )
    if loggers:
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    finally:
        if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
            import wandb

            wandb.finish()  # one W&B run per job, also in multirun sweeps
    summary = {
        "task": type(task).__name__,
        "model": type(module.model).__name__,
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "steps": trainer.global_step,
        "sequences_seen": int(module.sequences_seen),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    summary["solved"] = summary["metrics"].get("val/in_distribution/bit_errors", 1e9) < 0.05
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("summary: %s", json.dumps(summary))
    return summary
