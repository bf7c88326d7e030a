"""One training run from a composed config: ``python train.py`` calls `train`.

Builds the task, data and model (`config.build`), trains with Lightning until solved or
`trainer.max_steps`, writes `summary.json`, then evaluates the best checkpoint on the task's
grids (`evaluation.evaluate_model`) into `results.json` and figures. Under DDP every rank
trains; only global rank 0 writes, logs and evaluates.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from ntm.experiment import checkpoints, dashboard
from ntm.experiment.callbacks import StopWhenSolved, TrainingDiverged
from ntm.experiment.config import build, check_settings, cpu_settings, instantiate_or_fail
from ntm.experiment.evaluation import check_evaluation, evaluate_model, save_results
from ntm.experiment.results import (
    BIT_ERRORS,
    IN_DISTRIBUTION,
    SUMMARY_FILE,
    Conversion,
    RunSummary,
    val_key,
    write,
)

log = logging.getLogger(__name__)

# Two lines in every training log that say nothing about the run: Lightning's advertisement for
# its cloud logger, and a deprecation inside Lightning's use of torch (it goes with an upgrade).
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
    lambda record: "litlogger" not in record.getMessage()
)
warnings.filterwarnings("ignore", message=".*LeafSpec.* is deprecated")


def train(cfg: DictConfig, output_dir: str | Path) -> RunSummary:
    """Train as `cfg` says, write `summary.json` (and, unless disabled, the evaluation) into
    `output_dir`, and return the summary. A run stopped by `TrainingDiverged` writes both too
    (`diverged` set, its best checkpoint evaluated), then raises it."""
    check_settings(cfg)
    with cpu_settings(cfg):
        return _train(cfg, Path(output_dir))


def _train(cfg: DictConfig, output_dir: Path) -> RunSummary:
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
            dashboard.use_wandb_offline_without_credentials()
        loggers.append(instantiate_or_fail(cfg.logger, "logger"))
    callbacks = [
        instantiate_or_fail(node, f"callbacks.{name}")
        for name, node in cfg.get("callbacks", {}).items()
        if node is not None
    ]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar it may not show
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer = instantiate_or_fail(
        cfg.trainer,
        "trainer",
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(output_dir),
    )
    rank_zero = trainer.is_global_zero  # known once the Trainer exists (DDP, SLURM tasks)
    environment = {name: os.environ.get(name) for name in DDP_ENVIRONMENT}
    try:
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        run = dashboard.wandb_run(loggers) if rank_zero else None
        if run is not None:
            dashboard.plot_against_sequences(run)
        if rank_zero:
            log.info("run folder: %s | %s", output_dir.resolve(), dashboard.where(run))
        diverged = None
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        except TrainingDiverged as error:  # recorded and evaluated like any finished run
            diverged = error
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if diverged is None and val_key(IN_DISTRIBUTION, BIT_ERRORS) not in metrics:
            # No validation in this session (resumed at its cap, or fewer steps than
            # val_check_interval): validate the weights now, or the summary would hold no
            # validation metrics and count the run unsolved. Validating replaces Lightning's
            # metrics, so the training ones are kept from before.
            trainer.validate(module, datamodule=datamodule, verbose=False)
            metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
        # every session of a resumed run, as its sequences_seen counts them all
        summary = _summary(cfg, task, module, trainer, module.training_seconds(), metrics)
        summary.diverged = diverged is not None
        if rank_zero:
            write(summary, output_dir / SUMMARY_FILE)
            log.info(
                "trained %d steps (%s sequences, %.0f s): %s; in-distribution bit errors %.3g",
                summary.steps,
                f"{summary.sequences_seen:,}",
                summary.wall_time_s,
                "diverged" if summary.diverged else "solved" if summary.solved else "not solved",
                summary.metrics.get(val_key(IN_DISTRIBUTION, BIT_ERRORS), float("nan")),
            )
            if run is not None:
                dashboard.log_summary(run, summary)
            # A diverged run's last weights are not finite: only a best checkpoint is evaluated
            has_best = bool(getattr(trainer.checkpoint_callback, "best_model_path", ""))
            if (
                cfg.evaluation.enabled
                and not cfg.trainer.get("fast_dev_run")
                and (has_best or not summary.diverged)
            ):
                _evaluate_best(cfg, task, module, trainer, output_dir, run)
            log.info("done: %s | %s", output_dir.resolve(), dashboard.where(run))
    finally:
        _end_job(loggers, environment)
    if diverged is not None:
        raise diverged
    return summary


#: What Lightning's DDP launcher sets in the launching process's environment.
DDP_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def _end_job(loggers, environment: dict[str, str | None]) -> None:
    """Leave the process as the job found it, for the next job of a sweep: its own W&B run,
    its own DDP process group, and no DDP variables that would pass for a cluster's."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        wandb.finish()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _summary(
    cfg: DictConfig, task: Any, module, trainer: L.Trainer, wall: float, metrics: dict[str, float]
) -> RunSummary:
    errors = metrics.get(val_key(IN_DISTRIBUTION, BIT_ERRORS), float("inf"))
    stopper = next((c for c in trainer.callbacks if isinstance(c, StopWhenSolved)), None)
    solved_at = stopper.solved_at if stopper is not None else None
    if solved_at is None and errors < cfg.solved_below:  # no stopper: a fixed budget's end
        solved_at = int(module.sequences_seen)
    return RunSummary(
        task=task.name,
        model=cfg.model.label,
        seed=cfg.seed,
        parameters=sum(p.numel() for p in module.model.parameters()),
        steps=trainer.global_step,
        sequences_seen=int(module.sequences_seen),
        wall_time_s=round(wall, 1),
        solved=solved_at is not None,
        solved_below=cfg.solved_below,
        metrics=metrics,
        conversion=_conversion(module),
        solved_at=solved_at,
    )


def _conversion(module) -> Conversion | None:
    """A student's `Conversion`, as `config.build` stored it in the module."""
    stored = module.hparams.get("conversion")
    return Conversion(**stored) if stored else None


def _evaluate_best(cfg, task, module, trainer: L.Trainer, output_dir: Path, run) -> None:
    """The grids on the best checkpoint (the last weights if none was saved), into
    `output_dir` and the W&B `run` (None: no W&B)."""
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
        teacher=module.teacher,
        conversion=_conversion(module),
    )
    figures = save_results(results, output_dir)
    if run is not None:
        dashboard.log_evaluation(run, results, figures)
