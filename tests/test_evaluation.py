"""Generalisation/capacity grids (ntm/evaluation.py), evaluate.py and compare.py."""

import json
import sys
from pathlib import Path

import pytest
import torch

from ntm import NTM, LSTMBaseline
from ntm.evaluation import (
    as_difficulty,
    capacity,
    evaluate_grid,
    evaluate_point,
    grid_points,
    longest_solved,
)
from tasks import CopyTask

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import compare  # noqa: E402  (a top-level script)


def tiny_ntm():
    return NTM(
        input_size=9,
        output_size=8,
        controller_options={"hidden_size": 8},
        memory_slots=16,
        memory_width=4,
    )


def test_grid_points_and_difficulty():
    assert grid_points({"length": [1, 2], "repeats": [3]}) == [
        {"length": 1, "repeats": 3},
        {"length": 2, "repeats": 3},
    ]
    assert as_difficulty({"length": 5}) == {"min_length": 5, "max_length": 5}


def test_evaluate_point_counts_sequences_and_is_deterministic():
    model, task = tiny_ntm(), CopyTask()
    row = evaluate_point(model, task, {"length": 7}, sequences=10, batch_size=4)
    assert row["sequences"] == 10 and row["length"] == 7 and row["memory_slots"] == 16
    assert 0 <= row["bit_errors"] <= 7 * 8
    assert row == evaluate_point(model, task, {"length": 7}, sequences=10, batch_size=4)


def test_grid_and_memory_resizing():
    model, task = tiny_ntm(), CopyTask()
    rows = evaluate_grid(model, task, grid_points({"length": [2, 5]}), memory_slots=64, sequences=4)
    assert [r["length"] for r in rows] == [2, 5]
    assert all(r["memory_slots"] == 64 for r in rows)
    result = capacity(
        model, task, [8, 32], grid_points({"length": [2, 4]}), threshold=1.0, sequences=4
    )
    assert [(r["memory_slots"], r["length"]) for r in result["rows"]] == [
        (8, 2),
        (8, 4),
        (32, 2),
        (32, 4),
    ]
    assert set(result["longest_solved"]) == {"8", "32"}


def test_capacity_of_a_model_without_memory_is_empty():
    baseline = LSTMBaseline(input_size=9, output_size=8, hidden_size=8, num_layers=1)
    assert capacity(baseline, CopyTask(), [8], [{"length": 2}], threshold=1.0)["rows"] == []


def test_longest_solved_stops_at_the_first_failure():
    rows = [
        {"length": 10, "bit_errors": 0.0},
        {"length": 20, "bit_errors": 0.5},
        {"length": 40, "bit_errors": 3.0},
        {"length": 80, "bit_errors": 0.1},
    ]
    assert longest_solved(rows, "length", threshold=1.0) == 20
    assert longest_solved(rows, "length", threshold=0.01) == 10
    assert longest_solved(rows[2:3], "length", threshold=1.0) is None


def fake_run(folder, *, controller, seed, solved, sequences, errors):
    folder.mkdir(parents=True)
    model = "LSTMBaseline" if controller is None else "NTM"
    (folder / "summary.json").write_text(
        json.dumps(
            {
                "task": "copy",
                "model": model,
                "controller": controller,
                "seed": seed,
                "parameters": 1000,
                "steps": 10,
                "sequences_seen": sequences,
                "wall_time_s": 10.0,
                "metrics": {},
                "solved": solved,
            }
        )
    )
    rows = [
        {"length": length, "memory_slots": 128, "bit_errors": e, "cost_bits": e, "sequences": 64}
        for length, e in zip([20, 40], errors, strict=True)
    ]
    (folder / "results.json").write_text(
        json.dumps(
            {
                "generalisation": {"parameter": "length", "rows": rows, "longest_solved": 20},
                "capacity": {"rows": [], "longest_solved": {"64": 20, "128": 40}},
            }
        )
    )


def test_compare_builds_the_table_and_figures(tmp_path):
    sweep = tmp_path / "multirun"
    fake_run(sweep / "0", controller="lstm", seed=0, solved=True, sequences=1000, errors=[0.0, 0.5])
    fake_run(sweep / "1", controller="lstm", seed=1, solved=True, sequences=3000, errors=[0.0, 1.5])
    fake_run(
        sweep / "2", controller="lstm", seed=2, solved=False, sequences=9000, errors=[2.0, 9.0]
    )
    fake_run(sweep / "3", controller=None, seed=0, solved=False, sequences=5000, errors=[4.0, 30.0])
    assert compare.main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "comparison.md").read_text()
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    lstm = lines["| ntm-lstm"].split(" | ")
    assert lstm[1:4] == ["3", "2/3", "2,000 [1,000–3,000]"]  # median over solved runs only
    assert lstm[4] == "1,000"
    assert lstm[6] == "0 [0–2]" and lstm[7] == "1.50 [0.50–9]"
    assert lstm[8] == "64: 20, 128: 40 |"
    assert "| lstm_baseline | 1 | 0/1 | - |" in table
    figure = tmp_path / "out" / "generalisation_copy.png"
    assert figure.stat().st_size > 1000


def test_compare_without_runs_is_an_error(tmp_path):
    assert compare.main([str(tmp_path)]) == 2


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.manual_seed(0)
