"""Turn a sweep into a comparison: a markdown table and figures, per task and model.

    python train.py -m task=copy model=ntm controller=lstm,mlp,transformer seed=0,1,2
    python train.py -m task=copy model=lstm_baseline seed=0,1,2
    python compare.py multirun/<date> [more folders ...] [--out comparison/] [--wandb]

Reads every run folder below the given folders (each with summary.json and, after evaluation,
results.json) and writes <out>/comparison.md and <out>/generalisation_<task>.png: medians and
spread over seeds of sequences needed to solve the training distribution, bit errors at the
generalisation grid points (1x, 2x, 3x, 6x the training length where the grid has them),
longest length solved per memory size, parameter counts and training throughput.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def load_runs(folders: list[Path]) -> list[dict[str, Any]]:
    """One record per run folder: its summary.json, with results.json under "results"."""
    runs = []
    for folder in folders:
        for summary_path in sorted(folder.rglob("summary.json")):
            run = json.loads(summary_path.read_text())
            results_path = summary_path.with_name("results.json")
            run["results"] = json.loads(results_path.read_text()) if results_path.exists() else None
            run["folder"] = str(summary_path.parent)
            runs.append(run)
    return runs


def label(run: dict[str, Any]) -> str:
    """`ntm-lstm`, `ntm-mlp`, ... for NTMs; `lstm_baseline` for the baseline."""
    if run["model"] == "NTM":
        return f"ntm-{run.get('controller')}"
    return "lstm_baseline" if run["model"] == "LSTMBaseline" else run["model"]


def spread(values: list[float]) -> str:
    """'median [min-max]' of the values, or '-' when there are none."""
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


def _grid_label(row: dict[str, Any], parameters: list[str]) -> str:
    return " ".join(f"{name} {row[name]}" for name in parameters)


def _multiple(point: str, trained: dict[str, int]) -> str:
    """' (2×)' when a point's first value is a whole multiple of the longest trained value
    (' (2× length)' when the grid has several parameters)."""
    words = point.split()
    name, value = words[0], int(words[1])
    longest = trained.get(f"max_{name}")
    if not longest or value % longest:
        return ""
    return f" ({value // longest}× {name})" if len(words) > 2 else f" ({value // longest}×)"


def _grid_parameters(results: dict[str, Any]) -> list[str]:
    metric_keys = {"memory_slots", "bit_errors", "cost_bits", "sequences"}
    return [k for k in results["generalisation"]["rows"][0] if k not in metric_keys]


def compare(runs: list[dict[str, Any]]) -> tuple[str, dict[str, dict[str, dict]]]:
    """The markdown comparison and, per task and model, the curves for the figures."""
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        groups[run["task"]][label(run)].append(run)
    lines, curves = [], {}
    for task, models in sorted(groups.items()):
        lines.append(f"## {task}\n")
        with_results = [r["results"] for runs_ in models.values() for r in runs_ if r["results"]]
        parameters = _grid_parameters(with_results[0]) if with_results else []
        points = []
        for results in with_results:
            for row in results["generalisation"]["rows"]:
                point = _grid_label(row, parameters)
                if point not in points:
                    points.append(point)
        trained = with_results[0].get("trained", {}) if with_results else {}
        header = [
            "model",
            "runs",
            "solved",
            "sequences to solve",
            "parameters",
            "sequences/s",
            *[f"bit errors, {p}{_multiple(p, trained)}" for p in points],
            "longest solved per slots",
        ]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        curves[task] = {
            "_axis": (
                parameters[0] if parameters else "difficulty",
                trained.get(f"max_{parameters[0]}") if parameters else None,
            )
        }
        for name, model_runs in sorted(models.items()):
            solved = [r for r in model_runs if r["solved"]]
            errors = defaultdict(list)
            longest = defaultdict(list)
            for run in model_runs:
                if not run["results"]:
                    continue
                for row in run["results"]["generalisation"]["rows"]:
                    errors[_grid_label(row, parameters)].append(row["bit_errors"])
                for slots, value in run["results"]["capacity"].get("longest_solved", {}).items():
                    longest[int(slots)].append(value or 0)
            capacity = ", ".join(f"{s}: {spread(v)}" for s, v in sorted(longest.items())) or "-"
            lines.append(
                "| "
                + " | ".join(
                    [
                        name,
                        str(len(model_runs)),
                        f"{len(solved)}/{len(model_runs)}",
                        spread([r["sequences_seen"] for r in solved]),
                        spread([r["parameters"] for r in model_runs]),
                        spread(
                            [
                                r["sequences_seen"] / r["wall_time_s"]
                                for r in model_runs
                                if r["wall_time_s"]
                            ]
                        ),
                        *[spread(errors[p]) for p in points],
                        capacity,
                    ]
                )
                + " |"
            )
            if len(parameters) == 1 and errors:
                xs = sorted(errors, key=lambda p: int(p.split()[-1]))
                values = [errors[p] for p in xs]
                curves[task][name] = (
                    [int(p.split()[-1]) for p in xs],
                    [statistics.median(v) for v in values],
                    [min(v) for v in values],
                    [max(v) for v in values],
                )
        lines.append("")
        lines.append(
            "Cells are median [min–max] over seeds. 'sequences to solve' counts solved "
            "runs only; 'longest solved' is the largest grid value under the run's "
            "`solved_below` bit errors per sequence, per memory size.\n"
        )
    return "\n".join(lines), curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="multirun or outputs folders")
    parser.add_argument("--out", type=Path, default=None, help="default: the first folder")
    parser.add_argument("--wandb", action="store_true", help="also log to a W&B run")
    args = parser.parse_args(argv)
    runs = load_runs(args.folders)
    if not runs:
        print(f"error: no run folders (summary.json) under {args.folders}", file=sys.stderr)
        return 2
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    markdown, curves = compare(runs)
    (out / "comparison.md").write_text(markdown)
    print(markdown)
    from ntm import viz

    figures = {}
    for task, series in curves.items():
        xlabel, trained_max = series.pop("_axis")
        if series:
            figures[task] = viz.plot_curves(
                series,
                xlabel=xlabel,
                vline=trained_max,
                title=f"{task}: generalisation (median, min–max over seeds)",
            )
    if args.wandb:
        from ntm.training import use_wandb_offline_without_credentials

        use_wandb_offline_without_credentials()
        import wandb

        run = wandb.init(project="ntm", job_type="comparison", dir=str(out))
        try:
            run.log({f"comparison/{task}": wandb.Image(f) for task, f in figures.items()})
            run.log({"comparison/table": wandb.Html(f"<pre>{markdown}</pre>")})
        finally:
            wandb.finish()
    for task, figure in figures.items():
        viz.save(figure, out / f"generalisation_{task}.png")
    print(f"wrote {out / 'comparison.md'} and {len(figures)} figure(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
