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

from ntm import controllers
from ntm.evaluation import capacity, evaluate_grid, grid_points, longest_solved
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
        figure_dir=output_dir / "figures" if output_dir is not None and _figures(cfg) else None,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    return task, datamodule, module


def _figures(cfg: DictConfig) -> bool:
    from ntm import viz

    if cfg.figures and not viz.available():
        warnings.warn("figures=true but matplotlib is not installed: no figures", stacklevel=2)
    return cfg.figures and viz.available()


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
    try:
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        summary = _summary(cfg, task, module, trainer, time.perf_counter() - start)
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        log.info("summary: %s", json.dumps(summary))
        if cfg.evaluation.enabled and not cfg.trainer.get("fast_dev_run"):
            best = getattr(trainer.checkpoint_callback, "best_model_path", "")
            if best:
                module.load_state_dict(torch.load(best)["state_dict"])
            evaluate_model(module.model, task, cfg, output_dir, loggers)
    finally:
        if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
            import wandb

            wandb.finish()  # one W&B run per job, also in multirun sweeps
    return summary


def _summary(cfg: DictConfig, task: Any, module: SequenceModule, trainer, wall: float) -> dict:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {
        "task": task.name,
        "model": type(module.model).__name__,
        "controller": _controller_name(module.model),
        "seed": cfg.seed,
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "steps": trainer.global_step,
        "sequences_seen": int(module.sequences_seen),
        "wall_time_s": round(wall, 1),
        "metrics": metrics,
        "solved": metrics.get("val/in_distribution/bit_errors", float("inf")) < cfg.solved_below,
    }


def _controller_name(model: torch.nn.Module) -> str | None:
    controller = getattr(model, "controller", None)
    return controllers.name_of(controller) if controller is not None else None


def evaluate_model(
    model: torch.nn.Module, task: Any, cfg: DictConfig, output_dir: Path, loggers=()
) -> dict[str, Any]:
    """Generalisation and capacity grids of `cfg.evaluation`; writes `results.json` and PNGs
    into `output_dir` and logs them to W&B when a W&B logger is given."""
    settings = cfg.evaluation
    options = {
        "sequences": settings.sequences,
        "batch_size": settings.batch_size,
        "seed": settings.seed,
    }
    threshold = settings.solved_below
    model.eval()
    log.info("evaluating generalisation on %s", dict(settings.grid))
    rows = evaluate_grid(model, task, grid_points(settings.grid), progress=True, **options)
    key = next(iter(settings.grid))
    log.info("evaluating capacity: memory slots %s", list(settings.capacity.slots))
    capacity_result = capacity(
        model,
        task,
        list(settings.capacity.slots),
        grid_points(settings.capacity.grid),
        threshold=threshold,
        progress=True,
        **options,
    )
    results = {
        "task": task.name,
        "model": type(model).__name__,
        "controller": _controller_name(model),
        "seed": cfg.seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained": task.difficulty,
        "solved_below": threshold,
        "generalisation": {
            "parameter": key,
            "rows": rows,
            "longest_solved": longest_solved(rows, key, threshold),
        },
        "capacity": capacity_result,
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    _plot_results(results, output_dir, loggers)
    return results


def _plot_results(results: dict[str, Any], output_dir: Path, loggers) -> None:
    from ntm import viz

    if not viz.available():
        log.warning("matplotlib is not installed: no evaluation figures (pip install matplotlib)")
        return
    key = results["generalisation"]["parameter"]
    figures = {
        "generalisation": viz.plot_curves(
            _series(results["generalisation"]["rows"], key, "bit_errors"),
            xlabel=key,
            title=f"{results['task']}: generalisation",
            vline=results["trained"].get(f"max_{key}"),
        )
    }
    capacity_rows = results["capacity"]["rows"]
    if capacity_rows:
        figures["capacity"] = viz.plot_curves(
            _series(capacity_rows, results["capacity"]["parameter"], "bit_errors"),
            xlabel=results["capacity"]["parameter"],
            title=f"{results['task']}: capacity",
        )
    wandb_loggers = [lg for lg in loggers if type(lg).__name__ == "WandbLogger"]
    for name, figure in figures.items():
        for logger in wandb_loggers:
            logger.log_image(key=f"evaluation/{name}", images=[figure])
        viz.save(figure, output_dir / f"{name}.png")
    for logger in wandb_loggers:
        table = results["generalisation"]["rows"]
        columns = list(table[0])
        logger.log_table(
            key="evaluation/generalisation",
            columns=columns,
            data=[[row[c] for c in columns] for row in table],
        )


METRIC_KEYS = ("memory_slots", "bit_errors", "cost_bits", "sequences")


def _series(rows: list[dict[str, Any]], x_key: str, y_key: str) -> dict[str, tuple]:
    """One line per combination of the other grid parameters (memory size included), with
    `x_key` along x: {label: (x, y, None, None)} for `viz.plot_curves`."""
    lines: dict[str, tuple[list, list, None, None]] = {}
    for row in sorted(rows, key=lambda r: r[x_key]):
        others = {k: v for k, v in row.items() if k not in (x_key, *METRIC_KEYS)}
        label = ", ".join(f"{k} {v}" for k, v in others.items())
        if len({r["memory_slots"] for r in rows}) > 1:
            label = ", ".join(filter(None, [label, f"{row['memory_slots']} slots"]))
        x, y, _, _ = lines.setdefault(label or y_key.replace("_", " "), ([], [], None, None))
        x.append(row[x_key])
        y.append(row[y_key])
    return lines


def evaluate_checkpoint(ckpt_path: str | Path, overrides: list[str] = ()) -> dict[str, Any]:
    """Rebuild a run's task and model from its checkpoint, then `evaluate_model` it with the
    run's evaluation settings updated by dot-list `overrides` (``evaluation.grid.length=[10]``).
    Results go into the checkpoint's run folder."""
    ckpt_path = Path(ckpt_path)
    checkpoint = torch.load(ckpt_path, map_location="cpu")
    config = checkpoint["hyper_parameters"].get("config")
    if config is None:
        raise ConfigError(f"{ckpt_path} holds no run config: was it written by train.py?")
    cfg = OmegaConf.merge(OmegaConf.create(config), OmegaConf.from_dotlist(list(overrides)))
    cfg.compile = False  # evaluation runs without gradients, eagerly
    if "compile" in cfg.model:
        cfg.model.compile = False
    torch.set_num_threads(cfg.threads)
    task, _, module = build(cfg)
    module.load_state_dict(checkpoint["state_dict"])
    output_dir = ckpt_path.parent.parent
    return evaluate_model(module.model, task, cfg, output_dir)
