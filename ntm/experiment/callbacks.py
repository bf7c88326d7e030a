"""Lightning callbacks for a run's side effects, configured under `callbacks:` in train.yaml.

Throughput comes from Lightning's own `ThroughputMonitor` (``train/samples_per_sec``, with
validation time taken out), given `batch_size` below.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from ntm.experiment import plots
from ntm.experiment.results import SKIPPED_STEPS, train_key

log = logging.getLogger(__name__)


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
