"""The experiment app's data plumbing (ntm/experiment/data.py): training stream, fixed sets."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
from test_tasks import assert_batch_equal, assert_well_formed
from torch.utils.data import DataLoader

from ntm.experiment.conversion import WiderTask
from ntm.experiment.data import Curriculum, FixedTaskSet, TaskDataModule, TaskStream
from tasks import Batch, CopyTask, RepeatCopyTask


def first(iterable):
    return next(iter(iterable))


def test_stream_is_deterministic_and_seeded() -> None:
    task = CopyTask(width=3, min_length=4, max_length=4)
    stream = TaskStream(task=task, batch_size=2, seed=7)
    a, b = iter(stream), iter(stream)
    for _ in range(3):
        assert_batch_equal(next(a), next(b))
    other = first(TaskStream(task=task, batch_size=2, seed=8))
    assert not torch.equal(first(stream).inputs, other.inputs)
    assert not torch.equal(next(a).inputs, first(stream).inputs)  # the stream moves on


def test_stream_starts_anywhere_and_workers_split_it() -> None:
    task = CopyTask(width=4, min_length=1, max_length=9)
    whole = list(itertools.islice(TaskStream(task=task, batch_size=2, seed=0), 6))
    resumed = TaskStream(task=task, batch_size=2, seed=0, start=3)
    for expected, batch in zip(whole[3:], resumed, strict=False):
        assert_batch_equal(expected, batch)
    # Two worker processes each draw every other batch; the loader puts them back in order.
    loader = DataLoader(TaskStream(task=task, batch_size=2, seed=0), batch_size=None, num_workers=2)
    for expected, batch in zip(whole, itertools.islice(loader, 6), strict=True):
        assert_batch_equal(expected, batch)


def test_datamodule_continues_the_stream_where_the_trainer_is() -> None:
    task = CopyTask(width=4, min_length=1, max_length=9)
    whole = list(itertools.islice(TaskStream(task=task, batch_size=2, seed=3), 11))
    dm = TaskDataModule(task=task, batch_size=2, seed=3)
    assert_batch_equal(whole[0], first(dm.train_dataloader()))
    # A run resumed after 5 optimizer steps of 2 accumulated batches each.
    dm.trainer = SimpleNamespace(global_step=5, accumulate_grad_batches=2)
    assert_batch_equal(whole[10], first(dm.train_dataloader()))


def test_stream_differs_across_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = TaskStream(task=CopyTask(width=4, min_length=5, max_length=5), batch_size=4, seed=0)
    monkeypatch.setenv("RANK", "0")
    zero = first(stream)
    monkeypatch.setenv("RANK", "1")
    one = first(stream)
    assert not torch.equal(zero.inputs, one.inputs)
    assert_batch_equal(one, first(stream))


def test_fixed_task_set_is_reproducible() -> None:
    task = RepeatCopyTask(width=3, max_length=4, max_repeats=3)
    hard = {"min_length": 6, "max_length": 6, "min_repeats": 2, "max_repeats": 2}

    def build(seed: int) -> FixedTaskSet:
        return FixedTaskSet(task=task, num_batches=3, batch_size=2, seed=seed, difficulty=hard)

    a, b = build(1), build(1)
    assert len(a) == 3
    for i in range(3):
        assert_batch_equal(a[i], b[i])
        assert a[i].inputs.shape[0] == 2
        assert a[i].inputs.shape == (2, 6 + 2 + 2 * 6 + 1, 5)  # the overrides were applied
    assert not torch.equal(a[0].inputs, a[1].inputs)  # batches within a set differ
    assert not torch.equal(a[0].inputs, build(2)[0].inputs)


def test_datamodule_loaders() -> None:
    task = CopyTask(width=3, min_length=1, max_length=5)
    sets = {"train_range": {}, "length_8": {"min_length": 8, "max_length": 8}}
    dm = TaskDataModule(task=task, batch_size=4, val_sets=sets, val_batches=2, val_batch_size=3)
    assert dm.val_set_names == ["train_range", "length_8"]

    train = first(dm.train_dataloader())
    assert isinstance(train, Batch)
    assert train.inputs.shape[0] == 4 and train.inputs.shape[2] == 4
    assert_well_formed(task, train, batch_size=4)

    loaders = dm.val_dataloader()
    assert len(loaders) == 2
    batches = [list(loader) for loader in loaders]
    assert [len(b) for b in batches] == [2, 2]
    for batch in batches[0] + batches[1]:
        assert isinstance(batch, Batch)
        assert_well_formed(task, batch, batch_size=3)
    assert all(b.inputs.shape[1] == 2 * 8 + 1 for b in batches[1])
    # Fixed: a second call (next validation epoch) yields the same data.
    assert_batch_equal(batches[0][0], first(dm.val_dataloader()[0]))


def test_datamodule_val_sets_have_distinct_seeds() -> None:
    task = CopyTask(width=3, min_length=6, max_length=6)
    dm = TaskDataModule(task=task, batch_size=2, val_sets={"a": {}, "b": {}}, val_batches=1)
    a, b = (first(loader) for loader in dm.val_dataloader())
    assert not torch.equal(a.inputs, b.inputs)
    assert a.inputs.shape[0] == 2  # val_batch_size defaults to batch_size


def test_datamodule_defaults_and_validation() -> None:
    task = CopyTask()
    assert TaskDataModule(task=task, batch_size=2).val_set_names == ["train"]
    with pytest.raises(TypeError, match="allowed"):
        TaskDataModule(task=task, batch_size=2, val_sets={"bad": {"length": 3}})
    with pytest.raises(ValueError, match="batch_size"):
        TaskDataModule(task=task, batch_size=0)


def test_curriculum_widens_the_ranges_from_start_to_the_tasks_own() -> None:
    task = RepeatCopyTask(width=3, min_length=1, max_length=10, min_repeats=1, max_repeats=10)
    curriculum = Curriculum(
        task=task, start={"max_length": 2, "max_repeats": 4}, sequences=100, batch_size=10
    )
    assert curriculum.ranges(0) == {"max_length": 2, "max_repeats": 4}  # only what it names
    halfway = {"max_length": 6, "max_repeats": 7}  # 50 of 100 sequences: 2 + 4 and 4 + 3
    assert curriculum.ranges(5) == curriculum.ranges(1, world_size=5) == halfway
    assert (
        curriculum.ranges(10) == curriculum.ranges(1_000) == {"max_length": 10, "max_repeats": 10}
    )


def test_curriculum_holds_the_start_ranges_before_widening() -> None:
    task = RepeatCopyTask(width=3, min_length=1, max_length=10, min_repeats=1, max_repeats=10)
    curriculum = Curriculum(
        task=task, start={"max_repeats": 1}, sequences=90, batch_size=10, hold=30
    )
    # 0-30 sequences seen: held at 1; then 1 + 9 * (seen - 30) / 90
    batches = (0, 2, 3, 4, 8, 12, 100)
    expected = [1, 1, 1, 2, 6, 10, 10]
    assert [curriculum.ranges(i)["max_repeats"] for i in batches] == expected
    assert curriculum.ranges(2, world_size=2)["max_repeats"] == 2  # 40 seen over both ranks
    with pytest.raises(ValueError, match="curriculum.hold must be >= 0"):
        Curriculum(task=task, start={"max_repeats": 1}, sequences=90, batch_size=10, hold=-1)


def test_stream_follows_the_curriculum_and_resumes_on_it() -> None:
    task = CopyTask(width=3, min_length=1, max_length=20)
    curriculum = Curriculum(task=task, start={"max_length": 1}, sequences=40, batch_size=2)
    stream = TaskStream(task=task, batch_size=2, seed=0, curriculum=curriculum)
    whole = list(itertools.islice(stream, 30))
    # copy has t = 2 L + 1 steps: only length 1 at first, longer ones later, none beyond 20
    lengths = [(batch.inputs.shape[1] - 1) // 2 for batch in whole]
    assert lengths[0] == 1
    assert max(lengths[:3]) <= 3 and max(lengths) > 10 and max(lengths) <= 20
    resumed = TaskStream(task=task, batch_size=2, seed=0, start=7, curriculum=curriculum)
    for expected, batch in zip(whole[7:], resumed, strict=False):
        assert_batch_equal(expected, batch)


def test_repeat_copy_stream_scores_the_end_marker_once_the_curriculum_allows() -> None:
    """NTM-LSTM's repeat-copy defaults: the repeat count from 1 (configs/task/repeat_copy.yaml),
    the end marker scored from 3 repeats (configs/tuned/controller_task/adam_lstm_repeat_copy.yaml);
    here 1 to 10 over 90 sequences: max_repeats 3 from batch 2 of 10."""
    task = RepeatCopyTask(width=3, max_length=4, end_marker_from_repeats=3)
    curriculum = Curriculum(task=task, start={"max_repeats": 1}, sequences=90, batch_size=10)
    stream = TaskStream(task=task, batch_size=10, seed=0, curriculum=curriculum)
    scored = [bool(batch.mask[:, -1].all()) for batch in itertools.islice(stream, 12)]
    assert [curriculum.ranges(i)["max_repeats"] for i in range(3)] == [1, 2, 3]
    assert scored == [False, False] + [True] * 10


def test_curriculum_rejects_harder_or_unknown_starts() -> None:
    task = CopyTask(width=3, min_length=1, max_length=20)
    with pytest.raises(ValueError, match="easier than the task's ranges, got max_length=30 > 20"):
        Curriculum(task=task, start={"max_length": 30}, sequences=10, batch_size=1)
    with pytest.raises(TypeError, match="unknown difficulty"):
        Curriculum(task=task, start={"max_lenght": 3}, sequences=10, batch_size=1)
    with pytest.raises(ValueError, match="curriculum.sequences must be >= 1"):
        Curriculum(task=task, start={"max_length": 3}, sequences=0, batch_size=1)
    # A wider training stream (conversion's teacher_inputs) is where a curriculum ends.
    wider = WiderTask(task, {"max_length": 40})
    assert Curriculum(task=wider, start={"max_length": 30}, sequences=4, batch_size=1).ranges(
        4
    ) == {"max_length": 40}
    module = TaskDataModule(
        task=task, batch_size=2, curriculum={"start": {"max_length": 2}, "sequences": 100}
    )
    assert module.train_dataloader().dataset.curriculum.ranges(0)["max_length"] == 2
