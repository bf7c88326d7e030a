"""Lightning callbacks for a run's side effects, configured under `callbacks:` in train.yaml.

Throughput comes from Lightning's own `ThroughputMonitor` (``train/samples_per_sec``, with
validation time taken out), given `batch_size` below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from ntm.experiment import plots


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
