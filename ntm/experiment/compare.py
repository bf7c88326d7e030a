"""A comparison of runs: per task and model, medians and spread over seeds, as markdown and
curves. Reads the records of `results.py`; `compare.py` at the top is its command line."""

from __future__ import annotations

import csv
import re
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ntm.experiment.results import (
    AGREEMENT,
    BIT_ERRORS,
    EXACT_AGREEMENT,
    RESULTS_FILE,
    SUMMARY_FILE,
    TEACHER_BIT_ERRORS,
    EvaluationResults,
    ResultsFormatError,
    RunSummary,
    point_label,
    read,
    run_label,
    val_key,
)

#: The metric a run is judged solved on, as its summary last saw it.
FINAL = val_key("in_distribution", BIT_ERRORS)


@dataclass
class Run:
    """One run folder's records (results: None until evaluated)."""

    folder: Path
    summary: RunSummary
    results: EvaluationResults | None


def load_runs(folders: Iterable[Path]) -> list[Run]:
    """Every run folder (one with a summary.json) below `folders`, in path order."""
    runs = []
    for folder in folders:
        for summary_path in sorted(Path(folder).rglob(SUMMARY_FILE)):
            results_path = summary_path.with_name(RESULTS_FILE)
            runs.append(
                Run(
                    folder=summary_path.parent,
                    summary=read(summary_path, RunSummary),
                    results=read(results_path, EvaluationResults)
                    if results_path.exists()
                    else None,
                )
            )
    return runs


def spread(values: list[float]) -> str:
    """'median [min–max]' of the values, or '-' when there are none."""
    if not values:
        return "-"
    med = statistics.median(values)
    if min(values) == max(values):
        return _number(med)
    return f"{_number(med)} [{_number(min(values))}–{_number(max(values))}]"


def _number(value: float) -> str:
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _times(point: str, trained: dict[str, int]) -> int | None:
    """k when a point's first value is k times the longest trained value, else None."""
    name, value = point.split()[0], int(point.split()[1])
    longest = trained.get(f"max_{name}")
    return value // longest if longest and not value % longest else None


def _multiple(point: str, trained: dict[str, int]) -> str:
    """' (2×)' when a point's first value is a whole multiple of the longest trained value
    (' (2× length)' when the grid has several parameters)."""
    words = point.split()
    times = _times(point, trained)
    if times is None:
        return ""
    return f" ({times}× {words[0]})" if len(words) > 2 else f" ({times}×)"


#: Curves of one task: model -> (x, median, min, max) over seeds; see `plots.plot_curves`.
Curves = dict[str, tuple[list, list, list, list]]


@dataclass
class TaskComparison:
    task: str
    header: list[str]  # the table's columns
    rows: list[list[str]]  # one per model, cells as printed
    parameter: str | None  # the generalisation grid's x-axis
    trained_max: int | None  # its longest trained value
    curves: Curves  # bit errors along the generalisation grid
    capacity: Curves  # longest `parameter` solved per memory size (models with memory)
    learning: dict[str, list[tuple[list, list]]]  # model -> (sequences, bit errors) per run
    solved_below: float

    @property
    def markdown(self) -> str:
        """The table as markdown, under a heading, with a note on reading it."""
        lines = [f"## {self.task}\n", _markdown_row(self.header), "|" + "---|" * len(self.header)]
        lines += [_markdown_row(row) for row in self.rows]
        lines += [
            "",
            "Cells are median [min–max] over seeds. 'solved': solved runs of all runs, and how "
            "many diverged (stopped by non-finite updates in a row); 'sequences to solve' "
            "counts solved runs only, where they were found solved (the first validation "
            "under the threshold; without `stop_when_solved`, the end); "
            "'bit errors at the end' are per sequence on the in-distribution validation set at "
            "the last validation (a solved run stops there, or `train_after_solved` sequences "
            "later); "
            "'longest solved' is the largest grid value under the run's `point_solved_below` bit "
            "errors per sequence, per memory size.\n",
        ]
        return "\n".join(lines)


def _diverged(summaries: list[RunSummary]) -> str:
    """ ", 2 diverged" for runs stopped by the NaN guard, else nothing."""
    count = sum(s.diverged for s in summaries)
    return f", {count} diverged" if count else ""


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _curve(values: dict[int, list[float]]) -> tuple[list, list, list, list]:
    """(x, median, min, max) over the lists of values at each x, in x order."""
    xs = sorted(values)
    return (
        xs,
        [statistics.median(values[x]) for x in xs],
        [min(values[x]) for x in xs],
        [max(values[x]) for x in xs],
    )


def setting(run: Run, key: str, fallback: str | None = None) -> str:
    """The run's value of a config key (``optimizer.lr``) as its saved Hydra config gives it;
    `fallback` for runs whose config lacks the key: runs from before an option existed, which
    ran as its default does (``task.count_encoding``, ``fraction``)."""
    path = run.folder / ".hydra" / "config.yaml"
    if not path.exists():
        raise ResultsFormatError(f"{run.folder}: no .hydra/config.yaml to read {key} from")
    value = OmegaConf.select(OmegaConf.load(path), key, default=MISSING_SETTING)
    if value is MISSING_SETTING:
        if fallback is not None:
            return fallback
        raise ResultsFormatError(
            f"{run.folder}: its config has no key {key!r} (give it one: --by {key}=<value>)"
        )
    return str(value)


MISSING_SETTING = object()
NUMBER = re.compile(r"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)")


def label_order(label: str) -> list:
    """Sort key putting numbers in labels in numeric order: window=2 before window=16, and
    lr=0.00025 before lr=0.001 (text and numbers alternate, so like compares with like)."""
    return [float(part) if i % 2 else part for i, part in enumerate(NUMBER.split(label))]


def compare(runs: list[Run], by: Iterable[str] = ()) -> list[TaskComparison]:
    """Per task: the markdown table and, per model, the generalisation curve. `by`: config
    keys (e.g. ``optimizer.lr``) whose values tell runs of one model apart, as in a search:
    each value becomes a row of its own, labelled ``ntm-lstm, optimizer.lr=0.002``;
    ``key=value`` gives runs whose config lacks the key that value."""
    keys = []
    for spec in by:  # "key" or "key=fallback"
        key, has_fallback, fallback = spec.partition("=")
        keys.append((key, fallback if has_fallback else None))
    by_task: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        label = ", ".join(
            [run_label(run.summary)] + [f"{k}={setting(run, k, fallback)}" for k, fallback in keys]
        )
        by_task[run.summary.task][label].append(run)
    return [_compare_task(task, models) for task, models in sorted(by_task.items())]


def learning_curve(run: Run, column: str = FINAL) -> tuple[list[int], list[float]] | None:
    """A logged metric against sequences seen, from the run's CSV log (`logger=csv`): by
    default the in-distribution validation bit errors (e.g. ``train/bit_errors`` otherwise);
    None for a run logged otherwise or without that metric."""
    # version_<n>: a run resumed into its own folder logs a new version; later ones win
    logs = sorted(
        run.folder.glob("csv/version_*/metrics.csv"),
        key=lambda log: int(log.parent.name.removeprefix("version_")),
    )
    if not logs:
        return None
    points = {}
    for log in logs:
        with open(log, newline="") as file:
            for row in csv.DictReader(file):
                if row.get(column) and row.get("sequences"):
                    points[int(float(row["sequences"]))] = float(row[column])
    return (sorted(points), [points[x] for x in sorted(points)]) if points else None


def _compare_task(task: str, models: dict[str, list[Run]]) -> TaskComparison:
    evaluated = [run.results for runs in models.values() for run in runs if run.results]
    points: list[str] = []
    for results in evaluated:
        points += [p for p in results.generalisation.points() if p not in points]
    trained = evaluated[0].trained if evaluated else {}
    parameter = evaluated[0].generalisation.parameter if evaluated else None
    header = [
        "model",
        "runs",
        "solved",
        "sequences to solve",
        "bit errors at the end",
        "parameters",
        "sequences/s",
        *[f"bit errors, {p}{_multiple(p, trained)}" for p in points],
        "longest solved per slots",
    ]
    rows: list[list[str]] = []
    curves: Curves = {}
    capacity: Curves = {}
    learning: dict[str, list[tuple[list, list]]] = {}
    for name, runs in sorted(models.items(), key=lambda item: label_order(item[0])):
        learning[name] = [c for c in map(learning_curve, runs) if c is not None]
        summaries = [run.summary for run in runs]
        solved = [s for s in summaries if s.solved]
        errors: dict[str, list[float]] = defaultdict(list)
        longest: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            if run.results is None:
                continue
            for row in run.results.generalisation.rows:
                errors[point_label(row)].append(row[BIT_ERRORS])
            if run.results.capacity is not None:
                for slots, value in run.results.capacity.longest_solved.items():
                    longest[int(slots)].append(value or 0)
        cells = [
            name,
            str(len(runs)),
            f"{len(solved)}/{len(runs)}" + _diverged(summaries),
            spread([s.solved_at for s in solved]),
            spread([s.metrics[FINAL] for s in summaries if FINAL in s.metrics]),
            spread([s.parameters for s in summaries]),
            spread([s.sequences_seen / s.wall_time_s for s in summaries if s.wall_time_s]),
            *[spread(errors[p]) for p in points],
            ", ".join(f"{s}: {spread(v)}" for s, v in sorted(longest.items())) or "-",
        ]
        rows.append(cells)
        one_axis = all(len(p.split()) == 2 for p in points)
        if one_axis and errors:
            curves[name] = _curve({int(p.split()[-1]): v for p, v in errors.items()})
        if longest:
            capacity[name] = _curve(longest)
    trained_max = trained.get(f"max_{parameter}") if parameter else None
    solved_below = next(iter(models.values()))[0].summary.solved_below
    learning = {name: lines for name, lines in learning.items() if lines}
    return TaskComparison(
        task, header, rows, parameter, trained_max, curves, capacity, learning, solved_below
    )


#: The conversion table's measurements, each with the scale it is shown at.
CONVERSION_COLUMNS = {TEACHER_BIT_ERRORS: 1, BIT_ERRORS: 1, AGREEMENT: 100, EXACT_AGREEMENT: 100}


def conversion_tables(runs: list[Run], multiples: Collection[int] | None = None) -> str:
    """Per task, every group of students (same student, teacher, inputs and size) beside its
    teachers, one row per grid point at a whole multiple of the training range (1× is its
    hardest value; only the multiples in `multiples` if given): the teacher's and the student's
    bit errors and how often they agree. '' when no run has a teacher."""
    by_task: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.summary.conversion and run.results:
            by_task[run.summary.task][run_label(run.summary)].append(run)
    header = [
        "student ← teacher",
        "runs",
        "parameters (student / teacher)",
        "grid point",
        "teacher bit errors",
        "student bit errors",
        "bits agreeing (%)",
        "sequences agreeing exactly (%)",
    ]
    tables = []
    for task, students in sorted(by_task.items()):
        lines = [f"## {task}: conversion\n", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        for label, group in sorted(students.items(), key=lambda item: label_order(item[0])):
            trained = group[0].results.trained
            sizes = [
                spread([run.summary.parameters for run in group]),
                spread([run.summary.conversion.teacher_parameters for run in group]),
            ]
            # point -> metric -> one value per seed; agreement as a percentage
            values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            for run in group:
                for row in run.results.generalisation.rows:
                    for key, scale in CONVERSION_COLUMNS.items():
                        values[point_label(row)][key].append(row[key] * scale)
            for point, metrics in values.items():
                times = _times(point, trained)
                if times is None or (multiples and times not in multiples):
                    continue
                cells = [
                    label,
                    str(len(group)),
                    " / ".join(sizes),
                    point + _multiple(point, trained),
                ]
                lines.append(
                    "| "
                    + " | ".join(cells + [spread(metrics[k]) for k in CONVERSION_COLUMNS])
                    + " |"
                )
        lines.append(
            "\nCells are median [min–max] over seeds, on the evaluation grid (the students' best "
            "checkpoints); agreement is of outputs thresholded at 0.5.\n"
        )
        tables.append("\n".join(lines))
    return "\n".join(tables)
