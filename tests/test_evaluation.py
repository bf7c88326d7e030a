"""Generalisation/capacity grids (ntm/experiment/evaluation.py), the results records and
compare.py."""

import dataclasses
import json

import pytest
import torch

import compare
from ntm import NTM, LSTMBaseline
from ntm.experiment import results
from ntm.experiment.compare import compare as compare_runs
from ntm.experiment.compare import load_runs
from ntm.experiment.evaluation import (
    as_difficulty,
    capacity,
    evaluate_grid,
    evaluate_point,
    generalisation,
    grid_points,
    longest_solved,
)
from ntm.experiment.results import EvaluationResults, Grid, ResultsFormatError, RunSummary
from tasks import CopyTask, RepeatCopyTask


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


class HandWrittenOutputs(torch.nn.Module):
    """A stand-in model without memory whose `forward` writes its logits by hand."""

    memory_slots = None

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # for evaluate_point's device

    def initial_state(self, batch_size, **_):
        return None


def test_position_and_repetition_errors_say_where_a_model_fails():
    """A model that copies the first repetition and then outputs zeros: errors only after it."""
    task = RepeatCopyTask(width=4, max_length=3, max_repeats=3)

    class FirstRepetitionOnly(HandWrittenOutputs):
        def forward(self, inputs, state):
            length = int(inputs[0, :, task.width + 1].nonzero()[0]) - 1  # the count's step
            first_repetition = inputs[:, 1 : length + 1, : task.width]  # the data, as logits
            logits = torch.full((*inputs.shape[:2], task.output_size), -5.0)
            logits[:, length + 2 : 2 * length + 2, : task.width] = 10 * first_repetition - 5
            return logits, None

    row = evaluate_point(
        FirstRepetitionOnly(), task, {"length": 3, "repeats": 3}, sequences=16, batch_size=8
    )
    assert len(row["position_errors"]) == 3 * 3 + 1
    segments = row["segment_errors"]
    assert list(segments) == ["repeat 1", "repeat 2", "repeat 3", "end marker"]
    assert segments["repeat 1"] == 0 and segments["repeat 2"] > 0 and segments["repeat 3"] > 0
    assert segments["end marker"] == 1  # never emitted
    assert sum(segments.values()) == pytest.approx(row["bit_errors"])
    # The same split by output channels: the data bits wrong after the first repetition, the
    # end-marker channel only where the marker is due.
    by_channel = row["segment_channel_errors"]
    assert list(by_channel) == ["data", "end marker"]
    assert by_channel["end marker"] == {
        "repeat 1": 0,
        "repeat 2": 0,
        "repeat 3": 0,
        "end marker": 1,
    }
    assert by_channel["data"]["repeat 1"] == 0 and by_channel["data"]["end marker"] == 0
    assert by_channel["data"]["repeat 2"] == pytest.approx(segments["repeat 2"])
    # A point that leaves a range open has no fixed segments.
    assert "segment_errors" not in evaluate_point(
        FirstRepetitionOnly(), task, {"length": 3}, sequences=4
    )


def test_end_marker_errors_are_told_apart_from_data_errors():
    """A model that copies every repetition right and also emits the end marker at the last
    step of every repetition after the first (the paper's NTM beyond 11 repeats): no data
    errors, one end-marker error in each of repetitions 2 and 3 (hand-computed)."""
    task = RepeatCopyTask(width=4, max_length=3, max_repeats=3)
    length, repeats = 3, 3

    class MarkerAfterEveryRepetition(HandWrittenOutputs):
        def forward(self, inputs, state):
            data = inputs[:, 1 : length + 1, : task.width]  # (b, L, w)
            answer = length + 2
            logits = torch.full((*inputs.shape[:2], task.output_size), -5.0)
            logits[:, answer : answer + repeats * length, : task.width] = (
                10 * data.repeat(1, repeats, 1) - 5
            )
            for r in range(2, repeats + 1):  # the marker at each repetition's last step
                logits[:, answer + r * length - 1, task.width] = 5.0
            logits[:, -1, task.width] = 5.0  # and where it is due
            return logits, None

    point = {"length": length, "repeats": repeats}
    row = evaluate_point(MarkerAfterEveryRepetition(), task, point, sequences=8, batch_size=4)
    assert row["bit_errors"] == 2
    assert row["segment_channel_errors"] == {
        "data": {"repeat 1": 0, "repeat 2": 0, "repeat 3": 0, "end marker": 0},
        "end marker": {"repeat 1": 0, "repeat 2": 1, "repeat 3": 1, "end marker": 0},
    }
    # Copy has no channel groups: no split.
    copy_row = evaluate_point(tiny_ntm(), CopyTask(), {"length": 3}, sequences=4)
    assert "segment_channel_errors" not in copy_row
    # ... and the evaluation's figures show the split, one figure per channel group.
    pytest.importorskip("matplotlib", reason="figures need matplotlib")
    from ntm.experiment import plots

    evaluation = EvaluationResults(
        task="repeat_copy",
        model="test",
        seed=0,
        parameters=1,
        trained={"min_length": 1, "max_length": 3},
        point_solved_below=1.0,
        generalisation=Grid("length", [row], {"none": None}),
        capacity=None,
        checkpoint="none",
    )
    figures = plots.plot_results(evaluation)
    assert {"diagnostics", "diagnostics_data", "diagnostics_end_marker"} <= set(figures)
    marker_line = figures["diagnostics_end_marker"].axes[0].lines[0]
    assert list(marker_line.get_ydata()) == [0, 1, 1, 0]


def test_grid_and_memory_resizing():
    model, task = tiny_ntm(), CopyTask()
    rows = evaluate_grid(model, task, grid_points({"length": [2, 5]}), memory_slots=64, sequences=4)
    assert [r["length"] for r in rows] == [2, 5]
    assert all(r["memory_slots"] == 64 for r in rows)
    result = capacity(
        model, task, [8, 32], grid_points({"length": [2, 4]}), threshold=1.0, sequences=4
    )
    assert [(r["memory_slots"], r["length"]) for r in result.rows] == [
        (8, 2),
        (8, 4),
        (32, 2),
        (32, 4),
    ]
    assert set(result.longest_solved) == {"8", "32"}
    grid = generalisation(model, task, grid_points({"length": [2]}), threshold=1e9, sequences=4)
    assert grid.parameter == "length" and grid.longest_solved == {"16": 2}


def test_a_model_without_memory_has_no_capacity():
    baseline = LSTMBaseline(input_size=9, output_size=8, hidden_size=8, num_layers=1)
    assert capacity(baseline, CopyTask(), [8], [{"length": 2}], threshold=1.0) is None
    grid = generalisation(baseline, CopyTask(), [{"length": 2}], threshold=1e9, sequences=4)
    assert grid.longest_solved == {"none": 2}


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


def fake_run(
    folder,
    *,
    model,
    seed,
    solved,
    sequences,
    errors,
    final=None,
    lr=1e-3,
    diverged=False,
    solved_at=None,
):
    """A run folder as training leaves it, written through the results module (and the
    config file Hydra saves beside it); `final`: the last in-distribution bit errors;
    `solved_at`: by default the end of a solved run (it stopped there)."""
    summary = RunSummary(
        task="copy",
        model=model,
        seed=seed,
        parameters=1000,
        steps=10,
        sequences_seen=sequences,
        wall_time_s=10.0,
        solved=solved,
        solved_below=0.05,
        metrics={} if final is None else {"val/in_distribution/bit_errors": final},
        diverged=diverged,
        solved_at=(solved_at or sequences) if solved else None,
    )
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(f"seed: {seed}\noptimizer:\n  lr: {lr}\n")
    rows = [
        {"length": length, "memory_slots": 128, "bit_errors": e, "cost_bits": e, "sequences": 64}
        for length, e in zip([20, 40], errors, strict=True)
    ]
    evaluation = EvaluationResults(
        task="copy",
        model=model,
        seed=seed,
        parameters=1000,
        trained={"min_length": 1, "max_length": 20},
        point_solved_below=1.0,
        generalisation=Grid("length", rows, {"128": 20}),
        capacity=None if model == "lstm_baseline" else Grid("length", [], {"64": 20, "128": 40}),
        checkpoint="best.ckpt",
    )
    results.write(summary, folder / results.SUMMARY_FILE)
    results.write(evaluation, folder / results.RESULTS_FILE)
    return summary, evaluation


def test_records_round_trip_and_other_schemas_are_refused(tmp_path):
    summary, evaluation = fake_run(
        tmp_path, model="ntm-lstm", seed=0, solved=True, sequences=10, errors=[0.0, 1.0]
    )
    assert results.read(tmp_path / "summary.json", RunSummary) == summary
    assert results.read(tmp_path / "results.json", EvaluationResults) == evaluation
    assert not list(tmp_path.glob(".*.json*"))  # no temporary file left behind

    old = dataclasses.asdict(summary)
    del old["schema_version"]  # what the first version wrote
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ResultsFormatError, match="schema version 1, but this code reads"):
        results.read(tmp_path / "old.json", RunSummary)
    with pytest.raises(ResultsFormatError, match="not a RunSummary record"):
        results.read(tmp_path / "results.json", RunSummary)
    version_3 = dataclasses.asdict(summary) | {"schema_version": 3}  # before `diverged`
    del version_3["diverged"]
    (tmp_path / "v3.json").write_text(json.dumps(version_3))
    assert results.read(tmp_path / "v3.json", RunSummary) == summary  # read as not diverged
    version_4 = dataclasses.asdict(summary) | {"schema_version": 4}  # before `solved_at`
    del version_4["solved_at"]
    (tmp_path / "v4.json").write_text(json.dumps(version_4))
    assert results.read(tmp_path / "v4.json", RunSummary) == summary  # solved at its end
    (tmp_path / "broken.json").write_text('{"task": ')
    with pytest.raises(ResultsFormatError, match="not valid JSON"):
        results.read(tmp_path / "broken.json", RunSummary)


def test_compare_builds_the_table_and_figures(tmp_path):
    sweep = tmp_path / "multirun"
    lstm = {"model": "ntm-lstm", "errors": [0, 0.5]}
    fake_run(sweep / "0", **lstm, seed=0, solved=True, sequences=1000, final=0.0)
    fake_run(  # trained on past solved: counted where it was solved
        sweep / "1", **lstm, seed=1, solved=True, sequences=30000, solved_at=3000, final=0.04
    )
    fake_run(sweep / "2", **lstm | {"errors": [2, 9]}, seed=2, solved=False, sequences=9000)
    fake_run(
        sweep / "4", model="ntm-mlp", seed=0, solved=False, sequences=70, errors=[9, 9],
        diverged=True,
    )  # fmt: skip
    fake_run(
        sweep / "3", model="lstm_baseline", seed=0, solved=False, sequences=5000, errors=[4, 30]
    )
    assert compare.main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "comparison.md").read_text()
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    lstm = lines["| ntm-lstm"].split(" | ")
    assert lstm[1:4] == ["3", "2/3", "2,000 [1,000–3,000]"]  # median over solved runs only
    assert lstm[4] == "0.02 [0–0.04]"  # runs without the metric left out
    assert lstm[5] == "1,000"
    assert lstm[7] == "0 [0–2]" and lstm[8] == "0.50 [0.50–9]"
    assert lstm[9] == "64: 20, 128: 40 |"
    assert "| lstm_baseline | 1 | 0/1 | - |" in table
    assert "| ntm-mlp | 1 | 0/1, 1 diverged | - |" in table
    figure = tmp_path / "out" / "generalisation_copy.png"
    assert figure.stat().st_size > 1000


def test_compare_by_a_setting_gives_each_value_its_row(tmp_path, capsys):
    for seed, lr in [(0, 1e-3), (1, 1e-3), (0, 2e-3), (0, 1e-5)]:
        fake_run(
            tmp_path / f"{lr}-{seed}", model="ntm-mlp", seed=seed, lr=lr, solved=lr > 1e-3,
            sequences=800, errors=[0, 1],
        )  # fmt: skip
    assert compare.main(["--by", "optimizer.lr", str(tmp_path), "--out", str(tmp_path)]) == 0
    table = (tmp_path / "comparison.md").read_text()
    assert "| ntm-mlp, optimizer.lr=0.001 | 2 | 0/2 |" in table
    assert "| ntm-mlp, optimizer.lr=0.002 | 1 | 1/1 | 800 |" in table
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| ntm-mlp")]
    assert [row.split("=")[1] for row in rows] == ["1e-05", "0.001", "0.002"]  # numeric order
    assert compare.main([str(tmp_path), "--by", "optimizer.momentum"]) == 2
    assert "its config has no key 'optimizer.momentum'" in capsys.readouterr().err
    # runs from before a setting existed get the value given after '='
    assert (
        compare.main([str(tmp_path), "--by", "optimizer.momentum=0.9", "--by", "optimizer.lr"]) == 0
    )
    table = (tmp_path / "comparison.md").read_text()
    assert "| ntm-mlp, optimizer.momentum=0.9, optimizer.lr=0.002 | 1 | 1/1 | 800 |" in table


def test_compare_without_runs_or_with_old_records_is_an_error(tmp_path, capsys):
    assert compare.main([str(tmp_path)]) == 2
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"task": "copy"}))
    assert compare.main([str(tmp_path)]) == 2
    assert "schema version 1" in capsys.readouterr().err


def test_compare_draws_learning_curves_from_csv_logs(tmp_path):
    fake_run(tmp_path / "a", model="ntm-lstm", seed=0, solved=True, sequences=800, errors=[0, 1])
    log = tmp_path / "a" / "csv" / "version_0" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text(
        "step,sequences,train/loss,val/in_distribution/bit_errors\n"
        "0,8,0.7,\n199,1600,,40.0\n399,3200,,0.02\n"
    )
    fake_run(tmp_path / "b", model="ntm-lstm", seed=1, solved=True, sequences=800, errors=[0, 1])
    (task,) = compare_runs(load_runs([tmp_path]))
    assert task.learning == {"ntm-lstm": [([1600, 3200], [40.0, 0.02])]}  # b has no CSV log
    assert compare.main([str(tmp_path)]) == 0
    assert (tmp_path / "learning_copy.png").stat().st_size > 1000
