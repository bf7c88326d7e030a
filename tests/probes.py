"""A callback that records what each process of a run saw, for tests that run train.py in
other processes (DDP): ``+callbacks.probe._target_=probes.BatchProbe
+callbacks.probe.folder=<dir>`` with tests/ on PYTHONPATH."""

import hashlib
import json
from pathlib import Path

import lightning as L

from ntm.experiment.config import denormals_flushed


class BatchProbe(L.Callback):
    """Writes ``rank<r>.json`` into `folder` when training ends: a fingerprint of every
    training batch this rank trained on, and the validation metrics it ended with."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.batches: list[str] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        inputs = batch[0].detach().cpu().contiguous()
        self.batches.append(hashlib.sha256(inputs.numpy().tobytes()).hexdigest())

    def on_train_end(self, trainer, module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        record = {"world_size": trainer.world_size, "batches": self.batches, "val": metrics}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class DenormalProbe(L.Callback):
    """Appends to `DenormalProbe.seen`, at each training batch, whether the training thread
    flushed denormals (for in-process tests: a class attribute outlives the instance)."""

    seen: list[bool] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        DenormalProbe.seen.append(denormals_flushed())
