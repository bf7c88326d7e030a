"""The results format: what a training run and an evaluation write, and what comparison reads.

Two typed, versioned records, each one JSON file written atomically:
- `RunSummary` (``summary.json``): how training went (steps, sequences, time, final metrics).
- `EvaluationResults` (``results.json``): the generalisation and capacity grids.
A student trained from a teacher carries a `Conversion` in both (README "Conversion").

Metric names are defined here once; the LightningModule logs under `train_key`/`val_key`.
A file from another schema version is refused with a `ResultsFormatError` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

#: Bumped whenever a record's fields change meaning or name; readers refuse other versions.
#: Version 1 was the untyped JSON of the first release (no `schema_version` field); version 3
#: added `conversion` to both records and the teacher's metrics to grid rows; version 4 added
#: `diverged` to `RunSummary` (version 3 files are read as not diverged); version 5 added
#: `solved_at` (older files, whose runs stopped when solved, read as solved at their end).
SCHEMA_VERSION = 5

SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.json"

# Metric names, per sequence, on the scored steps (see ntm.metrics).
LOSS = "loss"
BIT_ERRORS = "bit_errors"
COST_BITS = "cost_bits"
#: Sequences seen in training: the paper's x-axis.
SEQUENCES = "sequences"
#: Updates skipped for a non-finite loss or gradient (callbacks.NonFiniteGuard).
SKIPPED_STEPS = "skipped_steps"
#: The validation set that decides "solved", checkpoints and early stopping.
IN_DISTRIBUTION = "in_distribution"
#: Diagnostics of a grid row: wrong bits at each scored position of the answer (a list), and
#: per part of the answer where the task defines parts (repeat copy: each repetition, the end
#: marker; a dict), and per part split by group of output channels where the task groups
#: them (repeat copy: data bits, end marker; a dict of dicts, group -> part -> wrong bits).
POSITION_ERRORS = "position_errors"
SEGMENT_ERRORS = "segment_errors"
SEGMENT_CHANNEL_ERRORS = "segment_channel_errors"
#: Conversion (a student trained on a teacher's outputs): the teacher's bit errors against the
#: truth, the fraction of scored output bits on which student and teacher agree (thresholded),
#: and the fraction of sequences on which they agree on every scored bit.
TEACHER_BIT_ERRORS = "teacher_bit_errors"
AGREEMENT = "agreement"
EXACT_AGREEMENT = "exact_agreement"
#: Columns of a grid row that are measurements, not grid coordinates.
ROW_MEASUREMENTS = (
    "memory_slots",
    BIT_ERRORS,
    COST_BITS,
    "sequences",
    POSITION_ERRORS,
    SEGMENT_ERRORS,
    SEGMENT_CHANNEL_ERRORS,
    TEACHER_BIT_ERRORS,
    AGREEMENT,
    EXACT_AGREEMENT,
)


def train_key(metric: str) -> str:
    """``train/bit_errors``."""
    return f"train/{metric}"


def val_key(set_name: str, metric: str) -> str:
    """``val/in_distribution/bit_errors``."""
    return f"val/{set_name}/{metric}"


class ResultsFormatError(ValueError):
    """A results file that is not of this code's schema (older, newer, or not a record)."""


@dataclass
class Conversion:
    """How a student was trained from a teacher (None in a record: trained on the truth)."""

    teacher: str  # the teacher's checkpoint
    teacher_model: str  # its label, e.g. "ntm-lstm"
    teacher_seed: int
    teacher_parameters: int
    inputs: dict[str, int]  # overrides of the task's training ranges, e.g. {"max_length": 40}
    temperature: float  # of the soft targets (ntm.metrics.soft_target_bce)
    parameter_target: int | None  # the parameter budget the student was sized to, if any

    def label(self, student: str) -> str:
        """'ntm-mlp ← ntm-lstm', with the wider inputs and the budget where set: what tells
        conversions apart in a comparison."""
        parts = [f"{student} ← {self.teacher_model}"]
        if self.inputs:
            parts.append("inputs " + " ".join(f"{k} {v}" for k, v in self.inputs.items()))
        if self.parameter_target:
            parts.append(f"sized to {self.parameter_target:,}")
        return ", ".join(parts)


@dataclass
class RunSummary:
    """What `train.py` writes when training ends (also when it stopped early, solved)."""

    task: str  # the task's name, e.g. "copy"
    model: str  # the model's label: "ntm-lstm", "ntm-mlp", ..., "lstm_baseline"
    seed: int
    parameters: int
    steps: int
    sequences_seen: int  # over all ranks
    wall_time_s: float  # training only (no start-up, no evaluation), every session of a resumed run
    solved: bool  # in-distribution bit errors per sequence under `solved_below`, at some point
    solved_below: float
    metrics: dict[str, float]  # the last logged value of every metric, by key
    conversion: Conversion | None = None  # set when trained from a teacher
    diverged: bool = False  # stopped by callbacks.NonFiniteGuard (non-finite updates in a row)
    # Sequences seen at the first validation under `solved_below` (None: never); below
    # `sequences_seen` when the run trained on past it (`train_after_solved`).
    solved_at: int | None = None
    schema_version: int = SCHEMA_VERSION


@dataclass
class Grid:
    """Bit errors of one model over grid points (one memory size, or several for capacity).

    rows: one per point, ``{**point, "memory_slots", "bit_errors", "cost_bits", "sequences",
    "position_errors"[, "segment_errors", "segment_channel_errors"]}``, e.g.
    ``{"length": 40, "memory_slots": 128, "bit_errors": 0.2, ...}``.
    parameter: the grid's first parameter, the one `longest_solved` counts along.
    longest_solved: the largest value of `parameter` solved counting up from the smallest, per
    memory size (keys are slot counts as strings, JSON's only key type); None: not even the
    smallest.
    """

    parameter: str
    rows: list[dict[str, Any]]
    longest_solved: dict[str, int | None] = field(default_factory=dict)

    def points(self) -> list[str]:
        """The grid coordinates of each row as a label, e.g. "length 40" (first-seen order)."""
        labels = []
        for row in self.rows:
            label = point_label(row)
            if label not in labels:
                labels.append(label)
        return labels


def point_label(row: dict[str, Any]) -> str:
    """ "length 10 repeats 20": a row's grid coordinates, in the grid's order."""
    return " ".join(f"{k} {v}" for k, v in row.items() if k not in ROW_MEASUREMENTS)


@dataclass
class EvaluationResults:
    """What the evaluation of a trained model writes (after training, or by `evaluate.py`)."""

    task: str
    model: str  # as in RunSummary
    seed: int
    parameters: int
    trained: dict[str, int]  # the training difficulty, e.g. {"min_length": 1, "max_length": 20}
    point_solved_below: float  # a grid point counts as solved under this many bit errors
    generalisation: Grid  # at the model's own memory size
    capacity: Grid | None  # memory resized at test time; None for a model without memory
    checkpoint: str  # the checkpoint evaluated
    conversion: Conversion | None = None  # set for a student: rows then hold teacher metrics
    schema_version: int = SCHEMA_VERSION


Record = TypeVar("Record", RunSummary, EvaluationResults)


def run_label(record: RunSummary | EvaluationResults) -> str:
    """The model's label, or for a student 'ntm-mlp ← ntm-lstm, ...' (`Conversion.label`)."""
    return record.conversion.label(record.model) if record.conversion else record.model


def replace_atomically(path: str | Path, write_to: Callable[[BinaryIO], Any]) -> Path:
    """Write a file by calling `write_to` on a temporary file beside `path`, flushed to disk,
    then renamed over `path`: readers, a killed process and a crashed machine all leave the
    old file or the new one, never half of one. The file gets the usual permissions (0666
    less the umask), not a temporary file's owner-only ones: results are for sharing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with os.fdopen(
            os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb"
        ) as file:
            write_to(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write(record: RunSummary | EvaluationResults, path: str | Path) -> Path:
    """Write `record` as JSON to `path` atomically (`replace_atomically`)."""
    text = json.dumps(dataclasses.asdict(record), indent=2)
    return replace_atomically(path, lambda file: file.write(text.encode()))


def read(path: str | Path, kind: type[Record]) -> Record:
    """The record of type `kind` in `path`; `ResultsFormatError` if it is of another schema."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ResultsFormatError(f"{path}: not valid JSON ({error})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsFormatError(
            f"{path}: not a readable results file ({type(error).__name__})"
        ) from None
    version = data.get("schema_version", 1) if isinstance(data, dict) else None
    if version in (3, 4):  # since then RunSummary gained `diverged` (4) and `solved_at` (5)
        data["schema_version"] = SCHEMA_VERSION
        if kind is RunSummary:
            data.setdefault("diverged", False)
            data.setdefault("solved_at", data.get("sequences_seen") if data.get("solved") else None)
    elif version != SCHEMA_VERSION:
        raise ResultsFormatError(
            f"{path}: results schema version {version}, but this code reads version "
            f"{SCHEMA_VERSION}; re-run the evaluation with this version (python evaluate.py "
            "ckpt_path=...) or read it with the version that wrote it"
        )
    names = {f.name for f in dataclasses.fields(kind)}
    if set(data) != names:
        raise ResultsFormatError(
            f"{path}: not a {kind.__name__} record (fields {sorted(data)}, expected "
            f"{sorted(names)})"
        )
    if data["conversion"] is not None:
        data["conversion"] = Conversion(**data["conversion"])
    if kind is EvaluationResults:
        data["generalisation"] = Grid(**data["generalisation"])
        data["capacity"] = Grid(**data["capacity"]) if data["capacity"] is not None else None
    return kind(**data)
