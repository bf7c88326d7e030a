"""One training run from a composed config: ``python train.py`` calls `train`.

Builds the task, data and model (`config.build`), trains with Lightning until solved or
`trainer.max_steps`, writes `summary.json`, then evaluates the best checkpoint on the task's
grids (`evaluation.evaluate_model`) into `results.json` and figures.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from ntm.experiment import checkpoints
from ntm.experiment.config import build, check_settings, instantiate_or_fail
from ntm.experiment.evaluation import check_evaluation, evaluate_model, save_results
from ntm.experiment.results import (
    BIT_ERRORS,
    IN_DISTRIBUTION,
    SUMMARY_FILE,
    RunSummary,
    val_key,
    write,
)
from ntm.experiment.wandb_setup import use_wandb_offline_without_credentials

log = logging.getLogger(__name__)


def train(cfg: DictConfig, output_dir: str | Path) -> RunSummary:
    """Train as `cfg` says, write `summary.json` (and, unless disabled, the evaluation) into
    `output_dir`, and return the summary."""
    output_dir = Path(output_dir)
    check_settings(cfg)
    torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task, datamodule, module = build(cfg)
    if cfg.evaluation.enabled:
        check_evaluation(task, OmegaConf.to_container(cfg.evaluation, resolve=True))
    if cfg.get("ckpt_path"):  # refused now, before anything is written, not inside Lightning
        resumed = checkpoints.load(cfg.ckpt_path)
        checkpoints.check_resumable(resumed, module, cfg, cfg.ckpt_path)

    loggers = []
    if cfg.get("logger") and "_target_" in cfg.logger:
        if "Wandb" in cfg.logger._target_:
            log.info("W&B mode: %s", use_wandb_offline_without_credentials())
        loggers.append(instantiate_or_fail(cfg.logger, "logger"))
    callbacks = [
        instantiate_or_fail(node, f"callbacks.{name}")
        for name, node in cfg.get("callbacks", {}).items()
        if node is not None
    ]
    trainer = instantiate_or_fail(
        cfg.trainer,
        "trainer",
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(output_dir),
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        summary = _summary(cfg, task, module, trainer, time.perf_counter() - start)
        if trainer.is_global_zero:  # one writer: DDP ranks share the run folder
            write(summary, output_dir / SUMMARY_FILE)
            log.info("summary: %s", summary)
        if (
            cfg.evaluation.enabled
            and not cfg.trainer.get("fast_dev_run")
            and trainer.is_global_zero
        ):
            _evaluate_best(cfg, task, module, trainer, output_dir, loggers)
    finally:
        if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
            import wandb

            wandb.finish()  # one W&B run per job, also in multirun sweeps
    return summary


def _summary(cfg: DictConfig, task: Any, module, trainer: L.Trainer, wall: float) -> RunSummary:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    errors = metrics.get(val_key(IN_DISTRIBUTION, BIT_ERRORS), float("inf"))
    return RunSummary(
        task=task.name,
        model=cfg.model.label,
        seed=cfg.seed,
        parameters=sum(p.numel() for p in module.model.parameters()),
        steps=trainer.global_step,
        sequences_seen=int(module.sequences_seen),
        wall_time_s=round(wall, 1),
        solved=errors < cfg.solved_below,
        solved_below=cfg.solved_below,
        metrics=metrics,
    )


def _evaluate_best(cfg, task, module, trainer: L.Trainer, output_dir: Path, loggers) -> None:
    """The grids on the best checkpoint (the last weights if none was saved)."""
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if best:
        module.load_state_dict(torch.load(best)["state_dict"])
    results = evaluate_model(
        module.model,
        task,
        OmegaConf.to_container(cfg.evaluation, resolve=True),
        label=cfg.model.label,
        seed=cfg.seed,
        checkpoint=best,
    )
    figures = save_results(results, output_dir)
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            for name, path in figures.items():
                logger.log_image(key=f"evaluation/{name}", images=[str(path)])
            rows = results.generalisation.rows
            columns = list(rows[0])
            logger.log_table(
                key="evaluation/generalisation",
                columns=columns,
                data=[[row[c] for c in columns] for row in rows],
            )
