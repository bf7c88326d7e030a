"""Lightning callbacks for a run's side effects, configured under `callbacks:` in train.yaml.

Throughput comes from Lightning's own `ThroughputMonitor` (``train/device/samples_per_sec``,
with validation time taken out), given `batch_size` below. Progress is a live bar in a terminal and
log lines elsewhere (`progress`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.loggers import WandbLogger

from ntm.experiment import plots
from ntm.experiment.results import BIT_ERRORS, SEQUENCES

log = logging.getLogger(__name__)
#: ThroughputMonitor's training sequences per second: over all ranks (logged under DDP only),
#: else on this device.
SEQUENCES_PER_SEC = ("train/samples_per_sec", "train/device/samples_per_sec")


def batch_size(batch) -> int:
    """Sequences in a batch ``(inputs (b, t, i), targets, mask)``, for `ThroughputMonitor`."""
    return batch[0].shape[0]


class ValidationFigures(L.Callback):
    """After each validation, one sequence of each validation set drawn with its input,
    target, output and head weightings over time: a PNG in `folder`, and an image on W&B when
    a W&B logger is attached. Needs matplotlib; without it, warns once and draws nothing."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.enabled = plots.available()
        if not self.enabled:
            plots.warn_unavailable("validation figures")

    @torch.no_grad()
    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not self.enabled or trainer.sanity_checking or not trainer.is_global_zero:
            return
        loaders = trainer.val_dataloaders
        loaders = loaders if isinstance(loaders, list) else [loaders]
        self.folder.mkdir(parents=True, exist_ok=True)
        step = trainer.global_step
        for name, loader in zip(module.val_set_names, loaders, strict=True):
            inputs, targets, _ = next(iter(loader))
            inputs = inputs[:1].to(module.device)
            logits, _, trace = module.model(inputs, return_trace=True)
            figure = plots.plot_sequence(
                inputs[0],
                targets[0],
                torch.sigmoid(logits[0]),
                None if trace is None else trace.read_weights[0],
                None if trace is None else trace.write_weights[0],
                title=f"{name}, step {step}",
            )
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=f"figures/{name}", images=[figure], step=step)
            plots.save(figure, self.folder / f"{name}_step{step:07d}.png")


def progress(style: str = "auto", every_n_steps: int = 200) -> ProgressBar:
    """How training shows its progress. style "bar": one live progress bar; "lines": a log line
    every `every_n_steps` steps and one per validation, for logs that are not a terminal (CI,
    SLURM, nohup), where a bar's carriage returns pile up; "auto": a bar when stdout (where
    both go) is a terminal, else lines."""
    if style == "auto":
        style = "bar" if sys.stdout.isatty() else "lines"
    if style == "bar":
        return LiveBar()
    if style == "lines":
        return LogLines(every_n_steps)
    raise ValueError(f"progress style must be auto, bar or lines, not {style!r}")


class LiveBar(TQDMProgressBar):
    """Lightning's bar as a single line: no validation bar beneath it (the label says
    "validating" meanwhile), no epoch number (the data stream has one endless epoch), and the
    metrics under short names so that the bar keeps its width."""

    @property
    def train_description(self) -> str:
        return "training"

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description("training")

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        super().on_validation_start(trainer, module)
        if not trainer.sanity_checking:
            self.train_progress_bar.set_description("validating")

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        super().on_validation_end(trainer, module)
        if not trainer.sanity_checking:
            self.train_progress_bar.set_description("training")

    def get_metrics(self, trainer: L.Trainer, module: L.LightningModule) -> dict:
        """``loss`` for train/loss, ``val/length_40`` for val/length_40/bit_errors; no logger
        version."""
        metrics = super().get_metrics(trainer, module)
        metrics.pop("v_num", None)
        return {_short(name): value for name, value in metrics.items()}


def _short(name: str) -> str:
    if name.startswith("val/"):
        return name.removesuffix(f"/{BIT_ERRORS}")
    return name.removeprefix("train/")


class LogLines(ProgressBar):
    """Progress as log lines: every `every_n_steps` training steps the step, sequences seen,
    sequences per second and the training metrics; after each validation its metrics."""

    def __init__(self, every_n_steps: int = 200) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.enabled = True

    def disable(self) -> None:  # Lightning disables the bar on ranks other than 0
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        if not self.enabled or trainer.global_step % self.every_n_steps:
            return
        words = [self._step(trainer)]
        if SEQUENCES in trainer.callback_metrics:
            words.append(f"{int(trainer.callback_metrics[SEQUENCES]):,} sequences")
        rates = [
            trainer.logged_metrics[k] for k in SEQUENCES_PER_SEC if k in trainer.logged_metrics
        ]
        if rates:  # with a logger attached, after ThroughputMonitor's first window of batches
            words.append(f"{float(rates[0]):,.0f} sequences/s")
        log.info("  ".join(words + self._metrics(trainer, module, "train/")))

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.enabled and not trainer.sanity_checking:
            log.info("  ".join([self._step(trainer), *self._metrics(trainer, module, "val/")]))

    @staticmethod
    def _step(trainer: L.Trainer) -> str:
        total = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""
        return f"step {trainer.global_step}{total}"

    def _metrics(self, trainer: L.Trainer, module: L.LightningModule, prefix: str) -> list[str]:
        """The progress-bar metrics under `prefix`, as "name value"."""
        metrics = self.get_metrics(trainer, module)
        return [f"{k} {float(v):.4g}" for k, v in metrics.items() if k.startswith(prefix)]
