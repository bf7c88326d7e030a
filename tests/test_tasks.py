"""Tests of tasks/: encodings by hand, shapes, masks, determinism, difficulty."""

from __future__ import annotations

import pytest
import torch

import tasks.associative_recall
import tasks.copy
import tasks.priority_sort
import tasks.repeat_copy
from tasks import (
    AssociativeRecallTask,
    Batch,
    CopyTask,
    PrioritySortTask,
    RepeatCopyTask,
    Task,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fixed_bits(monkeypatch: pytest.MonkeyPatch, module: object, data: torch.Tensor) -> None:
    """Make `module` use `data` (with a leading batch axis of 1) as its random bits."""

    def bits(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        assert tuple(shape) == tuple(data.shape)
        return data.clone()

    monkeypatch.setattr(module, "random_bits", bits)


def assert_batch_equal(a: Batch, b: Batch) -> None:
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def assert_well_formed(task: Task, batch: Batch, batch_size: int) -> None:
    """Types, shapes, dtypes and value sets every task must honour."""
    assert isinstance(batch, Batch)
    b, t, _ = batch.inputs.shape
    assert b == batch_size
    assert batch.inputs.shape == (b, t, task.input_size)
    assert batch.targets.shape == (b, t, task.output_size)
    assert batch.mask.shape == (b, t)
    assert batch.inputs.dtype == batch.targets.dtype == torch.float32
    assert batch.mask.dtype == torch.bool
    assert set(batch.targets.unique().tolist()) <= {0.0, 1.0}
    # Nothing to learn outside the scored steps.
    assert not batch.targets[~batch.mask].any()


ALL_TASKS = [
    pytest.param(lambda: CopyTask(width=3, min_length=1, max_length=5), id="copy"),
    pytest.param(
        lambda: RepeatCopyTask(width=3, min_length=1, max_length=4, min_repeats=1, max_repeats=3),
        id="repeat_copy",
    ),
    pytest.param(
        lambda: AssociativeRecallTask(width=3, item_length=2, min_items=2, max_items=4),
        id="associative_recall",
    ),
    pytest.param(
        lambda: PrioritySortTask(width=3, keep=4, min_items=2, max_items=6), id="priority_sort"
    ),
]


# --- common behaviour ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "input_size", "output_size", "name"),
    [
        (CopyTask(width=8), 9, 8, "copy"),
        (RepeatCopyTask(width=8), 10, 9, "repeat_copy"),
        (AssociativeRecallTask(width=6), 8, 6, "associative_recall"),
        (PrioritySortTask(width=8), 10, 8, "priority_sort"),
    ],
)
def test_sizes_and_names(task: Task, input_size: int, output_size: int, name: str) -> None:
    assert (task.input_size, task.output_size, task.name) == (input_size, output_size, name)


@pytest.mark.parametrize("make", ALL_TASKS)
def test_batches_are_well_formed(make) -> None:
    task = make()
    g = gen(1)
    for _ in range(5):
        assert_well_formed(task, task.sample(4, g), batch_size=4)


@pytest.mark.parametrize("make", ALL_TASKS)
def test_same_seed_same_data_other_seed_other_data(make) -> None:
    task = make()
    assert_batch_equal(task.sample(8, gen(3)), task.sample(8, gen(3)))
    # Pin every range to its maximum so the two seeds give equal shapes and differ in bits.
    top = task.difficulty
    fixed = {f"{end}_{r}": top[f"max_{r}"] for r in task.range_floors for end in ("min", "max")}
    a, b = task.sample(8, gen(3), **fixed), task.sample(8, gen(4), **fixed)
    assert a.inputs.shape == b.inputs.shape
    assert not torch.equal(a.inputs, b.inputs)


@pytest.mark.parametrize("make", ALL_TASKS)
def test_unknown_difficulty_key_raises(make) -> None:
    task = make()
    with pytest.raises(TypeError, match="allowed"):
        task.sample(2, gen(), max_lenght=3)


@pytest.mark.parametrize("make", ALL_TASKS)
def test_bad_batch_size_raises(make) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        make().sample(0, gen())


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (CopyTask, {"width": 0}, "width"),
        (CopyTask, {"min_length": 0}, "min_length"),
        (CopyTask, {"min_length": 5, "max_length": 3}, "min_length=5, max_length=3"),
        (RepeatCopyTask, {"width": 0}, "width"),
        (RepeatCopyTask, {"min_length": 4, "max_length": 2}, "min_length=4, max_length=2"),
        (RepeatCopyTask, {"min_repeats": 0}, "min_repeats"),
        (RepeatCopyTask, {"min_repeats": 3, "max_repeats": 2}, "min_repeats=3, max_repeats=2"),
        (AssociativeRecallTask, {"width": 0}, "width"),
        (AssociativeRecallTask, {"item_length": 0}, "item_length"),
        (AssociativeRecallTask, {"min_items": 1}, "min_items"),
        (AssociativeRecallTask, {"min_items": 5, "max_items": 3}, "min_items=5, max_items=3"),
    ],
)
def test_bad_constructor_args_raise(cls, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_constructors_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        CopyTask(8)  # type: ignore[misc]


def test_bad_override_raises_value_error() -> None:
    with pytest.raises(ValueError, match="min_length=30, max_length=20"):
        CopyTask(max_length=20).sample(2, gen(), min_length=30)


def test_memory_needed() -> None:
    assert CopyTask(max_length=20).memory_needed() == 20
    assert CopyTask(max_length=20).memory_needed(min_length=50, max_length=50) == 50
    assert RepeatCopyTask(max_length=10, max_repeats=10).memory_needed(max_repeats=20) == 10
    recall = AssociativeRecallTask(item_length=3, max_items=6)
    assert recall.memory_needed() == 18
    assert recall.memory_needed(max_items=12) == 36


# --- copy ---------------------------------------------------------------------------------


def test_copy_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """The picture in tasks/copy.py: width 2, sequence (1, 0), (1, 1)."""
    fixed_bits(monkeypatch, tasks.copy, torch.tensor([[[1.0, 0.0], [1.0, 1.0]]]))
    batch = CopyTask(width=2, min_length=2, max_length=2).sample(1, gen())
    # Rows are time steps here: columns are bit 0, bit 1, delimiter.
    inputs = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])
    targets = torch.tensor([[0, 0], [0, 0], [0, 0], [1, 0], [1, 1]])
    mask = torch.tensor([False, False, False, True, True])
    assert torch.equal(batch.inputs[0], inputs.float())
    assert torch.equal(batch.targets[0], targets.float())
    assert torch.equal(batch.mask[0], mask)


def test_copy_structure() -> None:
    task = CopyTask(width=4, min_length=1, max_length=6)
    g = gen(2)
    lengths = set()
    for _ in range(30):
        batch = task.sample(3, g)
        t = batch.inputs.shape[1]
        length = (t - 1) // 2
        assert t == 2 * length + 1
        lengths.add(length)
        data = batch.inputs[:, :length, :4]
        assert torch.equal(batch.targets[:, length + 1 :], data)
        assert not batch.inputs[:, :length, 4].any()  # delimiter off during the data
        assert batch.inputs[:, length, 4].eq(1).all() and not batch.inputs[:, length, :4].any()
        assert not batch.inputs[:, length + 1 :].any()  # blank while answering
        assert batch.mask[:, length + 1 :].all() and not batch.mask[:, : length + 1].any()
    assert lengths == set(range(1, 7))  # every length of the range is drawn


def test_copy_length_override() -> None:
    task = CopyTask(width=3, max_length=20)
    batch = task.sample(2, gen(), min_length=40, max_length=40)
    assert batch.inputs.shape == (2, 81, 4)
    assert int(batch.mask.sum()) == 2 * 40
    assert task.difficulty == {"min_length": 1, "max_length": 20}  # override is per call


# --- repeat copy --------------------------------------------------------------------------


def test_repeat_copy_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """The picture in tasks/repeat_copy.py: L = 2, R = 2, max_repeats = 4."""
    fixed_bits(monkeypatch, tasks.repeat_copy, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    task = RepeatCopyTask(width=2, min_length=2, max_length=2, min_repeats=2, max_repeats=4)
    batch = task.sample(1, gen(), max_repeats=2)
    # Rows are time steps: input columns bit 0, bit 1, start, count; output bit 0, bit 1, end.
    inputs = torch.tensor(
        [
            [0, 0, 1, 0],
            [1, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 0, 0.5],
            *[[0, 0, 0, 0]] * 5,
        ]
    )
    targets = torch.tensor(
        [*[[0, 0, 0]] * 4, [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    )
    mask = torch.tensor([False] * 4 + [True] * 5)
    assert torch.equal(batch.inputs[0], inputs.float())
    assert torch.equal(batch.targets[0], targets.float())
    assert torch.equal(batch.mask[0], mask)


def test_repeat_copy_structure() -> None:
    width, max_repeats = 3, 5
    task = RepeatCopyTask(width=width, min_length=1, max_length=4, max_repeats=max_repeats)
    g = gen(5)
    for _ in range(20):
        batch = task.sample(3, g)
        count = batch.inputs[:, :, width + 1]
        step = int(count[0].nonzero()[0])
        length = step - 1
        repeats = round(float(count[0, step]) * max_repeats)
        assert 1 <= length <= 4 and 1 <= repeats <= max_repeats
        assert batch.inputs.shape[1] == length + 2 + repeats * length + 1
        data = batch.inputs[:, 1 : length + 1, :width]
        answer = batch.targets[:, length + 2 : -1, :width]
        assert torch.equal(answer, data.repeat(1, repeats, 1))
        assert batch.targets[:, -1].tolist() == [[0.0] * width + [1.0]] * 3
        assert int(batch.mask[0].sum()) == repeats * length + 1 and batch.mask[:, -1].all()


def test_repeat_count_normaliser_is_fixed_by_training_range() -> None:
    task = RepeatCopyTask(width=2, min_length=1, max_length=1, max_repeats=10)
    batch = task.sample(1, gen(), min_repeats=20, max_repeats=20)
    assert batch.inputs[0, 2, 3].item() == pytest.approx(2.0)
    assert batch.inputs.shape[1] == 1 + 2 + 20 + 1


def test_standard_count_encoding_by_hand() -> None:
    """Counts 1-10: mean 5.5, variance (10**2 - 1) / 12 = 8.25."""
    task = RepeatCopyTask(width=2, min_length=1, max_length=1, count_encoding="standard")
    fed = {}
    for repeats in (1, 10, 20):
        batch = task.sample(1, gen(), min_repeats=repeats, max_repeats=repeats)
        fed[repeats] = batch.inputs[0, 2, 3].item()  # the count step of a length-1 sequence
    assert fed[1] == pytest.approx(-4.5 / 8.25**0.5)
    assert fed[1] == pytest.approx(-1.5667, abs=1e-4)
    assert fed[10] == pytest.approx(1.5667, abs=1e-4)
    assert fed[20] == pytest.approx(14.5 / 8.25**0.5)  # fixed by the training range


def test_standard_count_encoding_has_mean_0_and_variance_1_over_the_range() -> None:
    task = RepeatCopyTask(min_repeats=3, max_repeats=8, count_encoding="standard")
    fed = torch.tensor(
        [(r - task.count_offset) / task.count_scale for r in range(3, 9)], dtype=torch.float64
    )
    assert fed.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert fed.var(unbiased=False).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_repeats": 1, "max_repeats": 9, "count_encoding": "standard"}, "even number"),
        ({"count_encoding": "z"}, "'fraction' or 'standard'"),
    ],
)
def test_count_encoding_refuses_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RepeatCopyTask(**settings)


def test_end_marker_unscored_below_end_marker_from_repeats() -> None:
    task = RepeatCopyTask(width=2, min_length=3, max_length=3, end_marker_from_repeats=3)
    for max_repeats, scored in ((1, False), (2, False), (3, True), (10, True)):
        batch = task.sample(4, gen(), max_repeats=max_repeats)
        assert batch.mask[:, -1].all().item() is scored
        assert batch.targets[:, -1, 2].eq(1.0).all().item() is scored  # the end marker
        assert batch.mask[:, :-1].sum().item() == 4 * (batch.inputs.shape[1] - 1 - 3 - 2)
    # The default scores it in every batch, and the data is the same either way.
    default = RepeatCopyTask(width=2, min_length=3, max_length=3)
    batch, unscored = default.sample(4, gen(), max_repeats=1), task.sample(4, gen(), max_repeats=1)
    assert batch.mask[:, -1].all() and batch.targets[:, -1, 2].eq(1.0).all()
    assert torch.equal(batch.inputs, unscored.inputs)
    assert torch.equal(batch.targets[:, :-1], unscored.targets[:, :-1])


def test_end_marker_from_repeats_refuses_below_1() -> None:
    with pytest.raises(ValueError, match="end_marker_from_repeats"):
        RepeatCopyTask(end_marker_from_repeats=0)


# --- associative recall -------------------------------------------------------------------


def test_associative_recall_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two items of length 2: the query must be the first, the answer the second."""
    items = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 0.0]]]])  # (1, K, n, w)
    fixed_bits(monkeypatch, tasks.associative_recall, items)
    task = AssociativeRecallTask(width=2, item_length=2, min_items=2, max_items=2)
    batch = task.sample(1, gen())
    # Rows are time steps: columns bit 0, bit 1, item delimiter, query delimiter.
    inputs = torch.tensor(
        [
            [0, 0, 1, 0],  # item A
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 0, 1, 0],  # item B
            [0, 1, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 1],  # query: A
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 0, 0, 1],
            [0, 0, 0, 0],  # answer: B
            [0, 0, 0, 0],
        ]
    )
    targets = torch.zeros(12, 2)
    targets[10:] = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([False] * 10 + [True] * 2)
    assert torch.equal(batch.inputs[0], inputs.float())
    assert torch.equal(batch.targets[0], targets)
    assert torch.equal(batch.mask[0], mask)


def test_associative_recall_structure() -> None:
    width, n, k = 4, 2, 4
    task = AssociativeRecallTask(width=width, item_length=n, min_items=k, max_items=k)
    batch = task.sample(200, gen(6))
    assert batch.inputs.shape[1] == k * (n + 1) + 1 + n + 1 + n
    listed = batch.inputs[:, : k * (n + 1)].unflatten(1, (k, n + 1))  # (b, K, n + 1, w + 2)
    assert listed[:, :, 0, width].eq(1).all()  # one item delimiter before each item
    items = listed[:, :, 1:, :width]  # (b, K, n, w)
    query = batch.inputs[:, k * (n + 1) + 1 : k * (n + 1) + 1 + n, :width]  # (b, n, w)
    answer = batch.targets[:, -n:]
    seen = set()
    for i in range(batch.inputs.shape[0]):
        # Items may repeat by chance, so accept any position whose successor is the answer.
        matches = [
            j
            for j in range(k - 1)
            if torch.equal(items[i, j], query[i]) and torch.equal(items[i, j + 1], answer[i])
        ]
        assert matches, f"sequence {i}: the target is not the item after the query"
        seen.add(matches[0])
    assert seen == set(range(k - 1))  # any of the first K-1 items can be asked, not the last
    assert batch.mask[:, -n:].all() and int(batch.mask.sum()) == 200 * n


def test_associative_recall_items_override() -> None:
    task = AssociativeRecallTask(width=3, item_length=3, max_items=6)
    batch = task.sample(2, gen(), min_items=10, max_items=10)
    assert batch.inputs.shape == (2, 10 * 4 + 1 + 3 + 1 + 3, 5)


# --- priority sort ------------------------------------------------------------------------


def test_priority_sort_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """The picture in tasks/priority_sort.py: N = 3, keep = 2."""
    fixed_bits(monkeypatch, tasks.priority_sort, torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1, 1]]]))
    priorities = torch.tensor([[-0.5, 0.8, 0.1]])
    monkeypatch.setattr(tasks.priority_sort, "random_priorities", lambda shape, g: priorities)
    batch = PrioritySortTask(width=2, keep=2, min_items=3, max_items=3).sample(1, gen())
    # Rows are time steps: input columns bit 0, bit 1, priority, delimiter; output bit 0, bit 1.
    inputs = torch.tensor(
        [[1, 0, -0.5, 0], [0, 1, 0.8, 0], [1, 1, 0.1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    )
    targets = torch.tensor([[0, 0], [0, 0], [0, 0], [0, 0], [0, 1], [1, 1]])
    assert torch.equal(batch.inputs[0], inputs.float())
    assert torch.equal(batch.targets[0], targets.float())
    assert batch.mask[0].tolist() == [False] * 4 + [True] * 2


def test_priority_sort_structure() -> None:
    width = 4
    task = PrioritySortTask(width=width, keep=5, min_items=2, max_items=9)
    g = gen(7)
    for _ in range(20):
        batch = task.sample(3, g)
        items = int(batch.inputs[0, :, width + 1].argmax())  # the delimiter's step
        kept = min(5, items)
        assert batch.inputs.shape[1] == items + 1 + kept
        for b in range(3):
            priorities = batch.inputs[b, :items, width]
            assert priorities.min() >= -1 and priorities.max() < 1
            ranked = batch.inputs[b, priorities.argsort(descending=True)[:kept], :width]
            assert torch.equal(batch.targets[b, items + 1 :], ranked)
        assert int(batch.mask[0].sum()) == kept
    assert task.memory_needed(max_items=30) == 30
