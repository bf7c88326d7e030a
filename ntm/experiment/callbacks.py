"""Lightning callbacks for a run's side effects, configured under `callbacks:` in train.yaml.

Throughput comes from Lightning's own `ThroughputMonitor` (``train/device/samples_per_sec``,
with validation time taken out), given `batch_size` below. Progress is a live bar in a terminal and
log lines elsewhere (`progress`).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.loggers import WandbLogger

from ntm.experiment import plots
from ntm.experiment.results import BIT_ERRORS, SEQUENCES, SKIPPED_STEPS, train_key

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


class TrainingDiverged(RuntimeError):
    """Training stopped: updates kept coming out non-finite. The message names the steps and
    the checkpoint to resume from."""


class NonFiniteGuard(L.Callback):
    """Keeps NaN and infinity out of the weights: an update whose loss or gradients are not
    all finite is skipped (its gradients dropped, so the optimiser leaves the weights and its
    moments alone) and counted, logged as ``train/skipped_steps``. After `max_in_a_row`
    skipped updates in a row the weights are taken to be beyond repair, and training stops
    with `TrainingDiverged` naming the steps and the last checkpoint.

    The check runs before gradient clipping, which would turn an infinite gradient into a
    finite one (``gradient_clip_algorithm: value`` clamps it to the clip value). It costs one
    pass over the gradients and one flag read back to the host per optimizer step: on a CPU
    0.1-0.2 ms (measured, the default NTM: about 1% of a compiled step at batch 8); on a GPU
    also one synchronisation per step (the host waits for the backward pass before queuing
    the optimiser's kernels, so their launch no longer overlaps it).
    Under DDP the flag is reduced over ranks (one more small all-reduce), so that all skip
    together and their weights stay equal.
    """

    def __init__(self, max_in_a_row: int = 10, checkpoint: str | Path | None = None) -> None:
        """checkpoint: the file to name as the one to resume from (the run's last.ckpt)."""
        if max_in_a_row < 1:
            raise ValueError(f"max_in_a_row must be >= 1, got {max_in_a_row}")
        self.max_in_a_row = max_in_a_row
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.skipped = 0  # over the whole run, resumes included
        self.in_a_row = 0
        self.saved_step: int | None = None  # the step of the last checkpoint written
        self._loss: torch.Tensor | None = None

    def on_before_backward(self, trainer, module, loss: torch.Tensor) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer: L.Trainer, module, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # One norm per gradient in a single fused call (4x faster here than an isfinite per
        # tensor): NaN and infinity propagate into it. A finite gradient whose norm overflows
        # float32 (an element beyond ~1e19) counts as non-finite too: no use in such a step.
        values = list(torch._foreach_norm([p.grad for p in params if p.grad is not None]))
        if self._loss is not None:
            values.append(self._loss.reshape(()))
        finite = not values or bool(torch.stack(values).isfinite().all())  # the one host sync
        if trainer.strategy.reduce_boolean_decision(not finite, all=False):
            for p in params:
                p.grad = None  # no gradient: the optimiser skips the parameter entirely
            self.skipped += 1
            self.in_a_row += 1
            step = trainer.global_step + 1
            log.warning("update %d: non-finite loss or gradients, skipped", step)
            if self.in_a_row >= self.max_in_a_row:
                raise TrainingDiverged(self._message(step))
        else:
            self.in_a_row = 0
        module.log(train_key(SKIPPED_STEPS), float(self.skipped))

    def _message(self, step: int) -> str:
        last = "no checkpoint was saved"
        if self.checkpoint and self.checkpoint.exists():
            last = f"the last checkpoint is {self.checkpoint} (step {self.saved_step})"
        return (
            f"training: non-finite loss or gradients in {self.in_a_row} updates in a row "
            f"(updates {step - self.in_a_row + 1}-{step}), each skipped; {last}; resume with "
            "a lower optimizer.lr, or allow more with callbacks.nonfinite.max_in_a_row"
        )

    def on_save_checkpoint(self, trainer, module, checkpoint: dict[str, Any]) -> None:
        self.saved_step = trainer.global_step

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = state["skipped"]


class RandomState(L.Callback):
    """Saves torch's global random state in checkpoints and restores it on resume, so that
    whatever draws from it (``model.memory_init=random``) goes on as if the run had never
    stopped. (The training data does not draw from it: see `data.TaskStream`.)

    Restored at the first training batch rather than on loading: Lightning draws from the
    global generator in between (each new DataLoader iterator takes a seed from it), as the
    uninterrupted run did before its checkpoint was written.
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._to_restore = state

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if self._to_restore is None:
            return
        torch.set_rng_state(self._to_restore["cpu"])
        if "cuda" in self._to_restore and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._to_restore["cuda"])
        self._to_restore = None


class StopWhenSolved(L.Callback):
    """Stops training once the task is solved: at the first validation where `monitor` (the
    in-distribution bit errors per sequence) is under `below`, or `then_sequences` training
    sequences after it: training on past that point makes what was learned generalise further
    (README "Training past solved"; `BestCheckpoint` then keeps the best of the solved ones).

    `solved_at` holds the sequences seen at that first validation (None: not yet), kept in
    checkpoints so that a resumed run knows it; the run's summary reports it.
    """

    def __init__(
        self, below: float, monitor: str = "val/in_distribution/bit_errors", then_sequences: int = 0
    ) -> None:
        if then_sequences < 0:
            raise ValueError(f"then_sequences must be >= 0, got {then_sequences}")
        self.below = below
        self.monitor = monitor
        self.then_sequences = then_sequences
        self.solved_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.monitor not in trainer.callback_metrics:  # a misspelt key: never stop silently
            raise ValueError(f"callbacks.stop_when_solved: no metric {self.monitor!r} was logged")
        seen = int(module.sequences_seen)
        # The metric is synchronised over ranks (sync_dist), so every rank decides alike.
        if self.solved_at is None and float(trainer.callback_metrics[self.monitor]) < self.below:
            self.solved_at = seen
            if self.then_sequences and trainer.is_global_zero:
                log.info(
                    "solved at %s sequences; training on for %s more",
                    f"{seen:,}",
                    f"{self.then_sequences:,}",
                )
        if self.solved_at is not None and seen - self.solved_at >= self.then_sequences:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"solved_at": self.solved_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.solved_at = state["solved_at"]


class BestCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint` (one best checkpoint) that breaks ties on `monitor` by a
    second metric, `tie_break`, lower being better: a run trained past solved
    (`StopWhenSolved`) sits at 0 bit errors for many validations, and of those the one with the
    lowest in-distribution loss generalises best (README "Training past solved"), where the
    plain rule keeps the first.
    """

    def __init__(self, *args: Any, tie_break: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tie_break = tie_break
        self.best_tie_break = float("inf")  # `tie_break` of the best checkpoint so far

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        """Whether to save: better on `monitor`, or equal and lower on `tie_break`."""
        value = trainer.callback_metrics.get(self.tie_break) if self.tie_break else None
        if current is None or value is None or self.save_top_k != 1 or not self.best_k_models:
            save = super().check_monitor_top_k(trainer, current)
        else:
            best = self.best_k_models[self.kth_best_model_path]
            better = current < best if self.mode == "min" else current > best
            save = bool(better) or bool(current == best and float(value) < self.best_tie_break)
            save = trainer.strategy.reduce_boolean_decision(save)
        if save and value is not None and math.isfinite(float(value)):
            self.best_tie_break = float(value)
        return save

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's key: a checkpoint written before this class resumes its state."""
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"best_tie_break": self.best_tie_break}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # A checkpoint from before ties were broken: keep its best as the plain rule would.
        self.best_tie_break = state_dict.get("best_tie_break", float("-inf"))
