"""The LightningModule that trains any sequence model with the NTM's call signature.

Axes: b batch, t time, o output bits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from ntm.metrics import bit_errors_per_sequence, cost_bits_per_sequence, masked_bce


class SequenceModule(L.LightningModule):
    """Trains `model` (an `NTM`, `LSTMBaseline` or anything returning ``(logits, state)``) on
    batches ``(inputs (b, t, i), targets (b, t, o), mask (b, t))``.

    optimizer: a partial taking the parameters, e.g. ``functools.partial(torch.optim.Adam,
    lr=1e-3)`` (Hydra's ``_partial_: true``). val_set_names: names of the validation loaders,
    in order, for the metric keys. figure_dir: where figures go each validation (None: none).
    config: plain values stored in the checkpoint (e.g. the resolved run config), so a
    checkpoint says how to rebuild its model; it loads with torch's default weights_only.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        val_set_names: Sequence[str] = ("val",),
        figure_dir: str | Path | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "figure_dir"])
        self.model = model
        self.optimizer_factory = optimizer
        self.val_set_names = list(val_set_names)
        self.figure_dir = Path(figure_dir) if figure_dir is not None else None
        # The paper's x-axis. A buffer, so it is saved in checkpoints and resumes with them.
        self.register_buffer("sequences_seen", torch.zeros((), dtype=torch.long))
        self._last_step_end: float | None = None
        self._sequences_per_s: float | None = None  # smoothed: one step's rate is noisy

    def forward(self, inputs: Tensor) -> Tensor:
        return self.model(inputs)[0]

    def _metrics(self, logits: Tensor, targets: Tensor, mask: Tensor) -> dict[str, Tensor]:
        return {
            "loss": masked_bce(logits, targets, mask),
            "bit_errors": bit_errors_per_sequence(logits, targets, mask),
            "cost_bits": cost_bits_per_sequence(logits, targets, mask),
        }

    def training_step(self, batch, batch_idx: int) -> Tensor:
        inputs, targets, mask = batch
        metrics = self._metrics(self(inputs), targets, mask)
        batch_size = inputs.shape[0]
        self.log_dict(
            {f"train/{name}": value for name, value in metrics.items()},
            prog_bar=True,
            batch_size=batch_size,
        )
        self.sequences_seen += batch_size * self.trainer.world_size
        self.log("sequences", self.sequences_seen.float(), batch_size=batch_size)
        now = time.perf_counter()
        if self._last_step_end is not None:
            rate = batch_size / (now - self._last_step_end)
            previous = self._sequences_per_s
            self._sequences_per_s = rate if previous is None else 0.95 * previous + 0.05 * rate
            self.log(
                "train/sequences_per_s",
                self._sequences_per_s,
                prog_bar=True,
                batch_size=batch_size,
            )
        return metrics["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self._last_step_end = time.perf_counter()

    def on_validation_start(self) -> None:
        self._last_step_end = None  # validation time is not training throughput

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        inputs, targets, mask = batch
        name = self.val_set_names[dataloader_idx]
        metrics = self._metrics(self(inputs), targets, mask)
        self.log_dict(
            {f"val/{name}/{key}": value for key, value in metrics.items() if key != "bit_errors"},
            batch_size=inputs.shape[0],
            add_dataloader_idx=False,
        )
        self.log(  # in the progress bar too
            f"val/{name}/bit_errors",
            metrics["bit_errors"],
            batch_size=inputs.shape[0],
            add_dataloader_idx=False,
            prog_bar=True,
        )

    def on_validation_epoch_end(self) -> None:
        if self.figure_dir is None or self.trainer.sanity_checking:
            return
        self.log_figures()

    @torch.no_grad()
    def log_figures(self) -> None:
        """One sequence of each validation set: PNG in `figure_dir`, and to W&B if it logs."""
        from ntm import viz

        loaders = self.trainer.val_dataloaders
        loaders = loaders if isinstance(loaders, list) else [loaders]
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        for name, loader in zip(self.val_set_names, loaders, strict=False):
            inputs, targets, mask = next(iter(loader))
            inputs = inputs[:1].to(self.device)
            result = self.model(inputs, return_trace=True)
            logits, trace = result[0], result[2]
            figure = viz.plot_sequence(
                inputs[0],
                targets[0],
                torch.sigmoid(logits[0]),
                None if trace is None else trace.read_weights[0],
                None if trace is None else trace.write_weights[0],
                title=f"{name}, step {self.global_step}",
            )
            path = self.figure_dir / f"{name}_step{self.global_step:07d}.png"
            self._log_image(f"figures/{name}", figure)
            viz.save(figure, path)

    def _log_image(self, key: str, figure) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[figure], step=self.global_step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())
