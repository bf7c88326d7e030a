"""The LightningModule: loss and metrics of any sequence model with the NTM's call signature.

Side effects (figures, throughput, checkpoints, early stopping) are callbacks, not here.
Axes: b batch, t time, o output bits.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import Tensor, nn

from ntm.experiment.results import (
    AGREEMENT,
    BIT_ERRORS,
    COST_BITS,
    EXACT_AGREEMENT,
    LOSS,
    SEQUENCES,
    TEACHER_BIT_ERRORS,
    train_key,
    val_key,
)
from ntm.metrics import (
    agreement,
    bit_errors_per_sequence,
    cost_bits_per_sequence,
    exact_agreement,
    masked_bce,
    soft_target_bce,
)


class RateSchedule:
    """A `LambdaLR` factor: a linear warm-up from 1 / `warmup_steps` to 1 over `warmup_steps`
    updates, times `decay_factor` once per `decay_steps` updates counted from the first update,
    warm-up included (a step decay). 0 steps: none.
    """

    def __init__(self, warmup_steps: int = 0, decay_steps: int = 0, decay_factor: float = 0.5):
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.decay_factor = decay_factor

    def __call__(self, step: int) -> float:
        factor = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.decay_steps:
            factor *= self.decay_factor ** (step // self.decay_steps)
        return factor


class SequenceModule(L.LightningModule):
    """Trains `model` (an `NTM`, `LSTMBaseline` or anything returning ``(logits, state)``) on
    batches ``(inputs (b, t, i), targets (b, t, o), mask (b, t))``.

    optimizer: a partial taking the parameters, e.g. ``functools.partial(torch.optim.Adam,
    lr=1e-3)`` (Hydra's ``_partial_: true``). val_set_names: names of the validation loaders,
    in order, for the metric keys. config: plain values stored in the checkpoint (the resolved
    run config), so a checkpoint says how to rebuild its model; it loads with torch's default
    weights_only.

    teacher: a trained model whose outputs the model learns instead of the targets (conversion,
    README "Conversion"): the training loss is `soft_target_bce` against the teacher's output
    probabilities at `temperature`; metrics against the truth are logged as before, and
    agreement with the teacher beside them. The teacher is frozen, in eval mode, and not a
    submodule: its weights stay out of this module's state_dict, optimiser and checkpoints.
    conversion: plain values stored in the checkpoint beside `config`: who the teacher was
    (the fields of `results.Conversion`).
    warmup_steps: the learning rate rises linearly from lr / warmup_steps to lr over this many
    updates; 0: none. decay_steps, decay_factor: the rate is multiplied by decay_factor every
    decay_steps updates; 0: never (`RateSchedule`). A resumed run goes on from its
    checkpoint's step, with the configured rate and schedule.
    """

    #: Read by Lightning's ThroughputMonitor; FLOPs are not counted (nothing to compare them to
    #: on a CPU), only sequences per second.
    flops_per_batch = None

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        val_set_names: Sequence[str] = ("val",),
        config: Mapping[str, Any] | None = None,
        teacher: nn.Module | None = None,
        temperature: float = 1.0,
        conversion: Mapping[str, Any] | None = None,
        warmup_steps: int = 0,
        decay_steps: int = 0,
        decay_factor: float = 0.5,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "teacher"])
        self.model = model
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        # Set through __dict__ so that nn.Module does not register it as a submodule.
        self.__dict__["teacher"] = teacher
        self.temperature = temperature
        self.optimizer_factory = optimizer
        # Copied into each LambdaLR: loading a checkpoint's scheduler state overwrites the
        # settings of the object it holds, and the configured ones must win (on_train_start).
        self.schedule = RateSchedule(warmup_steps, decay_steps, decay_factor)
        self.val_set_names = list(val_set_names)
        # The paper's x-axis. A buffer, so it is saved in checkpoints and resumes with them.
        self.register_buffer("sequences_seen", torch.zeros((), dtype=torch.long))
        # Seconds trained in the sessions before this one (a resumed run's, from its
        # checkpoint), so that a run's training time, like its sequences, spans every session.
        self.earlier_training_seconds = 0.0
        self.session_start: float | None = None  # time.perf_counter() when this fit began

    def forward(self, inputs: Tensor) -> Tensor:
        return self.model(inputs)[0]

    @staticmethod
    def metrics(logits: Tensor, targets: Tensor, mask: Tensor) -> dict[str, Tensor]:
        return {
            LOSS: masked_bce(logits, targets, mask),
            BIT_ERRORS: bit_errors_per_sequence(logits, targets, mask),
            COST_BITS: cost_bits_per_sequence(logits, targets, mask),
        }

    @staticmethod
    def teacher_metrics(logits: Tensor, teacher_logits: Tensor, targets: Tensor, mask: Tensor):
        """How a student and its teacher compare, each against the truth and with each other."""
        return {
            TEACHER_BIT_ERRORS: bit_errors_per_sequence(teacher_logits, targets, mask),
            AGREEMENT: agreement(logits, teacher_logits, mask),
            EXACT_AGREEMENT: exact_agreement(logits, teacher_logits, mask),
        }

    def teacher_logits(self, inputs: Tensor) -> Tensor:
        # Not under no_grad: the teacher's parameters are frozen, so autograd records nothing
        # anyway, and with gradients enabled a compiled NTM runs its compiled step (about 3x
        # faster than the eager one it runs under no_grad).
        return self.teacher(inputs)[0].detach()

    def training_seconds(self) -> float:
        """Seconds trained so far, over every session of the run."""
        now = time.perf_counter() - self.session_start if self.session_start is not None else 0.0
        return self.earlier_training_seconds + now

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["training_seconds"] = self.training_seconds()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # absent from checkpoints written before it was kept: their earlier sessions count 0
        self.earlier_training_seconds = float(checkpoint.get("training_seconds", 0.0))

    def on_fit_start(self) -> None:
        self.session_start = time.perf_counter()
        if self.teacher is not None:  # not a submodule, so Lightning did not move it
            self.teacher.to(self.device)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        inputs, targets, mask = batch
        logits = self(inputs)
        metrics = self.metrics(logits, targets, mask)
        if self.teacher is not None:  # learn the teacher's outputs, not the targets
            teacher_logits = self.teacher_logits(inputs)
            metrics[LOSS] = soft_target_bce(logits, teacher_logits, mask, self.temperature)
            metrics[AGREEMENT] = agreement(logits, teacher_logits, mask)
        batch_size = inputs.shape[0]
        self.log_dict(
            {train_key(name): value for name, value in metrics.items()},
            prog_bar=True,
            batch_size=batch_size,
        )
        self.sequences_seen += batch_size * self.trainer.world_size
        self.log(SEQUENCES, self.sequences_seen.float(), batch_size=batch_size)
        return metrics[LOSS]

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        inputs, targets, mask = batch
        name = self.val_set_names[dataloader_idx]
        logits = self(inputs)
        metrics = self.metrics(logits, targets, mask)
        if self.teacher is not None:
            metrics |= self.teacher_metrics(logits, self.teacher_logits(inputs), targets, mask)
        for metric, value in metrics.items():
            self.log(
                val_key(name, metric),
                value,
                batch_size=inputs.shape[0],
                add_dataloader_idx=False,
                prog_bar=metric == BIT_ERRORS,
                # Under DDP each rank validates on its share of the set: average over ranks
                # (once per validation), so that every rank decides on the whole set.
                sync_dist=True,
            )

    def on_validation_epoch_end(self) -> None:
        # With the validation metrics, so that their row has its own x value on W&B.
        self.log(SEQUENCES, self.sequences_seen.float(), sync_dist=True)

    def _optimizer_factory(self) -> Callable[..., torch.optim.Optimizer]:
        """The configured optimiser, unfused under mixed precision (`trainer=gpu`): Lightning
        refuses to clip a fused optimiser's gradients there (it leaves their unscaling to the
        fused step)."""
        factory = self.optimizer_factory
        mixed = self._trainer is not None and isinstance(
            self.trainer.precision_plugin, MixedPrecision
        )
        if mixed and getattr(factory, "keywords", {}).get("fused"):
            factory = functools.partial(factory, fused=False)
        return factory

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        optimizer = self._optimizer_factory()(self.parameters())
        if not (self.schedule.warmup_steps or self.schedule.decay_steps):
            return optimizer
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, copy.copy(self.schedule))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        # An update skipped by callbacks.NonFiniteGuard has no gradients left to clip (and
        # torch's clip_grad_value_ fails on none).
        if any(p.grad is not None for group in optimizer.param_groups for p in group["params"]):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_train_start(self) -> None:
        # A resumed run's optimiser state comes from its checkpoint, settings included; the
        # configured ones win, so that e.g. a lower optimizer.lr takes effect on resume.
        settings = getattr(self._optimizer_factory(), "keywords", {})
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group.update(settings)
        # The configured schedule too, at the run's step (a checkpoint saved without a
        # schedule restored none).
        for config in self.trainer.lr_scheduler_configs:
            schedule = config.scheduler
            groups = schedule.optimizer.param_groups
            configured = copy.copy(self.schedule)
            schedule.lr_lambdas = [configured] * len(groups)
            schedule.last_epoch = self.trainer.global_step
            schedule.base_lrs = [
                settings.get("lr", group.get("initial_lr", group["lr"])) for group in groups
            ]
            for group, base in zip(groups, schedule.base_lrs, strict=True):
                group["initial_lr"] = base
                group["lr"] = base * configured(schedule.last_epoch)
