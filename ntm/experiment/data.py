"""Data plumbing for Lightning: an infinite training stream and fixed validation sets.

Every batch comes whole from `Task.sample`, so DataLoaders run with ``batch_size=None``
(no collation, no padding).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator, Mapping

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from tasks.base import Batch, Task, check_int

#: Validation set i is generated from seed + VAL_SEED_OFFSET + i, so it never shares a seed
#: with another validation set or with the training seed it was configured next to.
VAL_SEED_OFFSET = 10_000


def distributed_rank() -> int:
    """This process's rank: from torch.distributed if initialised, else $RANK, else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    # Launchers (torchrun, Lightning) set RANK before the process group exists.
    return int(os.environ.get("RANK", "0"))


def distributed_world_size() -> int:
    """The number of processes training together (1 without torch.distributed or $WORLD_SIZE)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def stream_seed(seed: int, rank: int, index: int) -> int:
    """A 64-bit generator seed unique to (seed, rank, batch index), the same on every run.

    Hashing rather than e.g. ``seed + index`` keeps neighbouring seeds' streams unrelated
    (seed 0 batch 1 would otherwise equal seed 1 batch 0).
    """
    digest = hashlib.sha256(f"{seed}/{rank}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class Curriculum:
    """Training ranges that move from easy ones to the task's own over `sequences` sequences.

    start: range bounds at the first batch, e.g. ``{"max_length": 2, "max_repeats": 2}``; each
    bound named there stays for the first `hold` sequences seen (over all ranks), then moves
    linearly (rounded) to the value the stream would otherwise use over the next `sequences`
    and stays there; the bounds not named keep their values. Difficulties are still drawn
    uniformly within the current ranges, so with only ``max_*`` bounds named easy sequences
    keep coming once harder ones appear. Like the stream itself it is a function of the batch
    index alone: a resumed run sees the same ranges.
    """

    def __init__(
        self,
        *,
        task: Task,
        start: Mapping[str, int],
        sequences: int,
        batch_size: int,
        hold: int = 0,
    ) -> None:
        self.sequences = check_int("curriculum.sequences", sequences, minimum=1)
        self.hold = check_int("curriculum.hold", hold, minimum=0)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        # A stream of a conversion.WiderTask draws from its wider `ranges`: end there.
        end = task.resolve(**getattr(task, "ranges", {}))
        first = task.resolve(**{**end, **start})  # checks names, floors, min <= max
        harder = [key for key in start if first[key] > end[key]]
        if harder:
            raise ValueError(
                "curriculum.start must be easier than the task's ranges, got "
                + ", ".join(f"{key}={first[key]} > {end[key]}" for key in harder)
            )
        self.start = {key: first[key] for key in start}
        self.end = {key: end[key] for key in start}

    def ranges(self, index: int, world_size: int = 1) -> dict[str, int]:
        """The bounds named in `start` for training batch `index` (0-based) of each of
        `world_size` processes."""
        seen = index * self.batch_size * world_size
        progress = min(1.0, max(0, seen - self.hold) / self.sequences)
        return {
            key: round(low + progress * (self.end[key] - low)) for key, low in self.start.items()
        }


class TaskStream(IterableDataset):
    """An endless stream of `Batch`es of `batch_size` sequences from `task`, from batch
    `start` on.

    Batch i is drawn from its own generator, seeded by (seed, rank, i): a run is reproducible
    from `seed`, ranks see different data, and the stream can start anywhere, so a resumed run
    continues exactly where its checkpoint left off. DataLoader worker w of W yields batches
    w, w + W, ..., which the DataLoader interleaves back into order: the same stream whatever
    the number of workers. Iterating again restarts at `start`. With a `curriculum`, batch i
    is drawn from its ranges for i instead of the task's own.
    """

    def __init__(
        self,
        *,
        task: Task,
        batch_size: int,
        seed: int,
        start: int = 0,
        curriculum: Curriculum | None = None,
    ) -> None:
        self.task = task
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seed = seed
        self.start = check_int("start", start, minimum=0)
        self.curriculum = curriculum

    def __iter__(self) -> Iterator[Batch]:
        # Looked up through the module at call time so tests can patch it.
        worker = torch.utils.data.get_worker_info()
        first, stride = (0, 1) if worker is None else (worker.id, worker.num_workers)
        rank, world_size = distributed_rank(), distributed_world_size()
        for index in itertools.count(self.start + first, stride):
            generator = torch.Generator().manual_seed(stream_seed(self.seed, rank, index))
            ranges = {} if self.curriculum is None else self.curriculum.ranges(index, world_size)
            yield self.task.sample(self.batch_size, generator, **ranges)


class FixedTaskSet(Dataset):
    """`num_batches` batches generated once from `seed`, for validation and test.

    `difficulty` overrides the task's ranges (e.g. ``{"min_length": 40, "max_length": 40}``).
    Item i is the i-th `Batch`; the set is identical whenever it is rebuilt with the same
    arguments.
    """

    def __init__(
        self,
        *,
        task: Task,
        num_batches: int,
        batch_size: int,
        seed: int,
        difficulty: Mapping[str, int] | None = None,
    ) -> None:
        check_int("num_batches", num_batches, minimum=1)
        self.difficulty = dict(difficulty or {})
        generator = torch.Generator().manual_seed(seed)
        self.batches = [
            task.sample(batch_size, generator, **self.difficulty) for _ in range(num_batches)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Batch:
        return self.batches[index]


class TaskDataModule(L.LightningDataModule):
    """Training stream and named validation sets for one task.

    val_sets: name -> difficulty overrides, e.g.
        ``{"train_range": {}, "length_40": {"min_length": 40, "max_length": 40}}``;
        default ``{"train": {}}``. `val_dataloader` returns one loader per set in this order
        (Lightning's dataloader_idx indexes `val_set_names`).
    val_batches: batches per validation set. val_batch_size: defaults to `batch_size`.
    curriculum: ``{"start": {...}, "sequences": n}`` to train from easy ranges up (`Curriculum`);
        validation always uses the task's own ranges.
    """

    def __init__(
        self,
        *,
        task: Task,
        batch_size: int,
        seed: int = 0,
        val_sets: Mapping[str, Mapping[str, int]] | None = None,
        val_batches: int = 4,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        curriculum: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        self.task = task
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seed = seed
        self.val_sets = {name: dict(d) for name, d in (val_sets or {"train": {}}).items()}
        if not self.val_sets:
            raise ValueError("val_sets must name at least one validation set")
        for overrides in self.val_sets.values():
            task.resolve(**overrides)  # fail at construction, not at the first validation
        self.val_set_names = list(self.val_sets)
        self.val_batches = check_int("val_batches", val_batches, minimum=1)
        self.val_batch_size = check_int(
            "val_batch_size", batch_size if val_batch_size is None else val_batch_size, minimum=1
        )
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        self.curriculum = (
            None
            if curriculum is None
            else Curriculum(task=task, batch_size=self.batch_size, **dict(curriculum))
        )
        self._val_datasets: list[FixedTaskSet] | None = None

    def batches_trained(self) -> int:
        """Training batches the attached trainer has consumed: 0 for a new run, the
        checkpoint's position for a resumed one (Lightning restores the step first)."""
        if self.trainer is None:
            return 0
        return self.trainer.global_step * self.trainer.accumulate_grad_batches

    def train_dataloader(self) -> DataLoader:
        stream = TaskStream(
            task=self.task,
            batch_size=self.batch_size,
            seed=self.seed,
            start=self.batches_trained(),
            curriculum=self.curriculum,
        )
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
            # Spare the worker start-up cost whenever Lightning re-creates the iterator.
            persistent_workers=self.num_workers > 0,
        )

    def val_datasets(self) -> list[FixedTaskSet]:
        """The validation sets in `val_set_names` order, built once on first use."""
        if self._val_datasets is None:
            self._val_datasets = [
                FixedTaskSet(
                    task=self.task,
                    num_batches=self.val_batches,
                    batch_size=self.val_batch_size,
                    seed=self.seed + VAL_SEED_OFFSET + index,
                    difficulty=overrides,
                )
                for index, overrides in enumerate(self.val_sets.values())
            ]
        return self._val_datasets

    def val_dataloader(self) -> list[DataLoader]:
        # In-memory batches: worker processes would only add start-up cost.
        return [DataLoader(dataset, batch_size=None) for dataset in self.val_datasets()]
