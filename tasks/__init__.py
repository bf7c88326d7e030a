"""Algorithmic tasks of Graves et al. 2014 (section 4) that generate their own data.

Each task states its input/output widths and returns `Batch(inputs, targets, mask)` from
``task.sample(batch_size, generator, **difficulty)``. This package imports only torch (never
`ntm` or Lightning); the training stream and validation sets built from a task live with the
experiment app, in `ntm.experiment.data`.
"""

from __future__ import annotations

from tasks.associative_recall import AssociativeRecallTask
from tasks.base import Batch, Task
from tasks.copy import CopyTask
from tasks.priority_sort import PrioritySortTask
from tasks.repeat_copy import RepeatCopyTask

__all__ = [
    "AssociativeRecallTask",
    "Batch",
    "CopyTask",
    "PrioritySortTask",
    "RepeatCopyTask",
    "Task",
]
