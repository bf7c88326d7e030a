"""Conversion: a student trained on a teacher's outputs (README "Conversion"), its agreement
metrics, teacher checkpoints, parameter budgets and the comparison's conversion table."""

import functools
import os
import pickle
import subprocess
import sys

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from test_training import ROOT, compose_train

import compare
from ntm import NTM
from ntm.experiment import results
from ntm.experiment.compare import conversion_tables, load_runs
from ntm.experiment.config import ConfigError, build, load_trained, parameter_count
from ntm.experiment.conversion import WiderTask, closest_size
from ntm.experiment.data import TaskDataModule
from ntm.experiment.evaluation import evaluate_checkpoint
from ntm.experiment.module import SequenceModule
from ntm.experiment.results import Conversion, EvaluationResults, Grid, RunSummary
from ntm.experiment.run import train
from tasks import CopyTask


class AllOnesTeacher(torch.nn.Module):
    """Says 1 on every bit whatever the input: wrong on about half the bits of copy."""

    def initial_state(self, batch_size, **_):
        return None

    def forward(self, inputs, state=None):
        return torch.full((*inputs.shape[:2], 4), 5.0), None


def test_the_student_learns_the_teachers_outputs_not_the_targets():
    task = CopyTask(width=4, max_length=3)
    student = NTM(
        input_size=5,
        output_size=4,
        controller="mlp",
        controller_options={"hidden_size": 8},
        memory_slots=8,
        memory_width=4,
    )
    module = SequenceModule(
        model=student,
        optimizer=functools.partial(torch.optim.Adam, lr=3e-2),
        val_set_names=["in_distribution"],
        teacher=AllOnesTeacher(),
    )
    assert not any(key.startswith("teacher") for key in module.state_dict())
    data = TaskDataModule(task=task, batch_size=8, val_sets={"in_distribution": {}})
    trainer = L.Trainer(
        max_steps=60,
        val_check_interval=60,
        check_val_every_n_epoch=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=data)
    metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
    assert metrics["val/in_distribution/agreement"] > 0.95
    # ... and so it is as wrong as the teacher: about half of the 4 bits of 2 steps on average
    assert metrics["val/in_distribution/teacher_bit_errors"] > 2
    assert metrics["val/in_distribution/bit_errors"] > 2
    assert metrics["val/in_distribution/exact_agreement"] > 0.5


TINY = [
    "debug=steps",
    "model.compile=false",
    "memory=small",
    "controller.hidden_size=8",
    "task.max_length=5",
    "~validation.length_40",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "callbacks.figures=null",
    "evaluation.grid.length=[3,5]",
    "evaluation.capacity.slots=[16]",
    "evaluation.capacity.grid.length=[3]",
    "evaluation.sequences=8",
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny NTM-LSTM trained on copy for a few steps: its run folder."""
    folder = tmp_path_factory.mktemp("teacher")
    train(compose_train(TINY, folder), folder)
    return folder


def test_a_student_run_round_trips_its_teacher(teacher, tmp_path):
    checkpoint = teacher / "checkpoints" / "best.ckpt"
    rebuilt = load_trained(checkpoint)
    assert not rebuilt.model.training and rebuilt.conversion is None
    assert rebuilt.task.name == "copy" and rebuilt.config.model.label == "ntm-lstm"

    student = train(
        compose_train([*TINY, "controller=mlp", f"teacher={checkpoint}"], tmp_path), tmp_path
    )
    assert student.model == "ntm-mlp"
    assert student.conversion == Conversion(
        teacher=str(checkpoint),
        teacher_model="ntm-lstm",
        teacher_seed=0,
        teacher_parameters=parameter_count(rebuilt.model),
        inputs={},
        temperature=1.0,
        parameter_target=None,
    )
    assert 0 <= student.metrics["val/in_distribution/agreement"] <= 1
    assert results.read(tmp_path / "summary.json", RunSummary) == student
    # The teacher is not part of the student's checkpoint, only named in it.
    saved = torch.load(tmp_path / "checkpoints" / "best.ckpt")
    assert all(key.startswith("model.") or key == "sequences_seen" for key in saved["state_dict"])
    assert parameter_count(load_trained(tmp_path / "checkpoints" / "best.ckpt").model) == (
        student.parameters
    )

    # The grids hold teacher, student and their agreement at each point; the teacher's errors
    # are those of its own evaluation (same points, same fixed-seed sequences).
    evaluation = results.read(tmp_path / "results.json", EvaluationResults)
    own = results.read(teacher / "results.json", EvaluationResults)
    assert evaluation.conversion == student.conversion
    for row, teachers_row in zip(
        evaluation.generalisation.rows, own.generalisation.rows, strict=True
    ):
        assert row["teacher_bit_errors"] == pytest.approx(teachers_row["bit_errors"])
        assert 0 <= row["exact_agreement"] <= row["agreement"] <= 1
    assert "agreement" in evaluation.capacity.rows[0]
    assert (tmp_path / "agreement.png").stat().st_size > 1000

    # evaluate.py rebuilds the student and its teacher from the student's checkpoint alone.
    again = evaluate_checkpoint(
        OmegaConf.create(
            {
                "ckpt_path": str(tmp_path / "checkpoints" / "best.ckpt"),
                "threads": 1,
                "flush_denormal": True,
                "evaluation": {"grid": {"length": [5]}, "capacity": {"slots": [16]}},
            }
        ),
        tmp_path / "evaluated",
    )
    assert again.conversion == student.conversion
    assert (
        again.generalisation.rows[0]["agreement"] == evaluation.generalisation.rows[1]["agreement"]
    )


def test_a_teacher_for_other_widths_is_a_one_line_error(teacher, tmp_path):
    checkpoint = teacher / "checkpoints" / "best.ckpt"
    cfg = compose_train([*TINY[:3], "task=associative_recall", f"teacher={checkpoint}"], tmp_path)
    with pytest.raises(
        ConfigError, match="teacher: .* was trained on copy with 9 input and 8 output"
    ):
        build(cfg)
    with pytest.raises(ConfigError, match="teacher: no such file"):
        build(compose_train([*TINY[:3], f"teacher={tmp_path / 'none.ckpt'}"], tmp_path))
    with pytest.raises(ConfigError, match="teacher_inputs: wider inputs are for a student"):
        build(compose_train([*TINY[:3], "teacher_inputs={max_length:40}"], tmp_path))

    run = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "debug=fast", "model.compile=false"]
        + ["task=associative_recall", f"teacher={checkpoint}"],
        cwd=tmp_path,
        env=dict(os.environ, WANDB_MODE="disabled"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert (
        run.stderr.startswith("error: teacher: ") and "associative_recall has 8 and 6" in run.stderr
    )
    assert "Traceback" not in run.stderr


def test_wider_teacher_inputs_reach_training_only(teacher, tmp_path):
    checkpoint = teacher / "checkpoints" / "best.ckpt"
    plain = build(compose_train([*TINY, f"teacher={checkpoint}"], tmp_path))[1]
    cfg = compose_train(
        [*TINY, f"teacher={checkpoint}", "teacher_inputs={max_length:12}"], tmp_path
    )
    task, data, _ = build(cfg)
    assert isinstance(data.task, WiderTask) and task.difficulty["max_length"] == 5
    generator = torch.Generator().manual_seed(0)
    lengths = {int(data.task.sample(2, generator).mask[0].sum()) for _ in range(40)}
    assert max(lengths) > 5 and max(lengths) <= 12
    # DataLoader workers get it pickled
    assert pickle.loads(pickle.dumps(data.task)).ranges == data.task.ranges
    for wide, own in zip(data.val_datasets(), plain.val_datasets(), strict=True):
        for a, b in zip(wide.batches, own.batches, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    with pytest.raises(ConfigError, match="teacher_inputs: .*max_width"):
        build(
            compose_train(
                [*TINY, f"teacher={checkpoint}", "teacher_inputs={max_width:3}"], tmp_path
            )
        )


def test_closest_size_by_hand():
    def count(hidden):
        return 10 * hidden * hidden + 100

    assert closest_size(count, 1100) == 10  # exactly 1,100
    assert closest_size(count, 1300) == 11  # 1,310 is nearer than 1,100
    assert closest_size(count, 1300, step=4) == 12  # 1,540 is nearer than 740
    assert closest_size(count, 5) == 1  # the smallest there is
    assert closest_size(lambda h: h, 1_000_003) == 1_000_003


@pytest.mark.parametrize("student", ["mlp", "transformer", "lstm_baseline"])
def test_students_sized_to_their_teacher(student, teacher, tmp_path):
    checkpoint = teacher / "checkpoints" / "best.ckpt"
    overrides = {
        "mlp": [*TINY, "controller=mlp"],
        "transformer": [
            *TINY,
            "controller=transformer",
            "controller.ff_size=8",
            "controller.num_heads=2",
        ],
        "lstm_baseline": [TINY[0], *TINY[4:], "model=lstm_baseline", "model.num_layers=1"],
    }[student]
    cfg = compose_train(
        [*overrides, f"teacher={checkpoint}", "student_parameters=teacher"], tmp_path
    )
    module = build(cfg)[2]
    target = parameter_count(load_trained(checkpoint).model)
    assert abs(parameter_count(module.model) - target) <= 0.1 * target
    assert module.hparams.conversion["parameter_target"] == target
    # The size chosen is in the run config that goes into the checkpoint.
    node = cfg.model if student == "lstm_baseline" else cfg.model.controller
    assert module.hparams.config["model"] == OmegaConf.to_container(cfg.model, resolve=True)
    if student == "transformer":
        assert node.hidden_size % node.num_heads == 0


def test_a_budget_out_of_reach_or_without_a_teacher_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="student_parameters: the closest ntm-mlp has"):
        build(compose_train([*TINY, "controller=mlp", "student_parameters=10"], tmp_path))
    with pytest.raises(ConfigError, match="student_parameters: 'teacher' needs teacher="):
        build(compose_train([*TINY, "student_parameters=teacher"], tmp_path))
    cfg = compose_train([*TINY, "controller=mlp", "student_parameters=20000"], tmp_path)
    assert abs(parameter_count(build(cfg)[2].model) - 20000) <= 2000


def fake_student(folder, *, seed, agree, teacher_errors, student_errors, inputs):
    """A student's run folder as training leaves it, written through the results module."""
    conversion = Conversion("t.ckpt", "ntm-lstm", seed, 500, inputs, 1.0, None)
    rows = [
        {
            "length": length,
            "memory_slots": 32,
            "bit_errors": student_errors,
            "cost_bits": 1.0,
            "sequences": 64,
            "teacher_bit_errors": teacher_errors,
            "agreement": agree,
            "exact_agreement": agree / 2,
        }
        for length in (10, 20, 40)
    ]
    summary = RunSummary("copy", "ntm-mlp", seed, 100, 10, 80, 1.0, False, 0.05, {}, conversion)
    evaluation = EvaluationResults(
        task="copy",
        model="ntm-mlp",
        seed=seed,
        parameters=100,
        trained={"min_length": 1, "max_length": 20},
        point_solved_below=1.0,
        generalisation=Grid("length", rows, {"32": None}),
        capacity=None,
        checkpoint="best.ckpt",
        conversion=conversion,
    )
    results.write(summary, folder / results.SUMMARY_FILE)
    results.write(evaluation, folder / results.RESULTS_FILE)
    return evaluation


def test_compare_tables_students_apart_and_beside_their_teachers(tmp_path):
    written = fake_student(
        tmp_path / "a0", seed=0, agree=0.9, teacher_errors=1, student_errors=2, inputs={}
    )
    assert results.read(tmp_path / "a0" / "results.json", EvaluationResults) == written
    fake_student(tmp_path / "a1", seed=1, agree=0.7, teacher_errors=3, student_errors=4, inputs={})
    wide = {"max_length": 40}
    fake_student(
        tmp_path / "b0", seed=0, agree=1.0, teacher_errors=0, student_errors=0, inputs=wide
    )
    assert compare.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert "| ntm-mlp ← ntm-lstm | 2 | 0/2 |" in table
    assert "| ntm-mlp ← ntm-lstm, inputs max_length 40 | 1 | 0/1 |" in table
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| ntm-mlp ← ntm-lstm | 2 | 100 / 500 |")
    ]
    # length 10 is no whole multiple of the trained 20: only 20 (1×) and 40 (2×)
    measured = "| 2 [1–3] | 3 [2–4] | 80 [70–90] | 40 [35–45] |"
    assert rows == [
        f"| ntm-mlp ← ntm-lstm | 2 | 100 / 500 | length 20 (1×) {measured}",
        f"| ntm-mlp ← ntm-lstm | 2 | 100 / 500 | length 40 (2×) {measured}",
    ]
    only = conversion_tables(load_runs([tmp_path]), multiples={2})
    assert "length 40 (2×)" in only and "length 20 (1×)" not in only


def test_the_experiment_script_plans_teachers_first_and_resumes(tmp_path):
    from scripts import conversion as experiment

    args = experiment.argparse.Namespace(
        out=tmp_path,
        seeds=[0],
        tasks=list(experiment.PLAN),
        teachers=list(experiment.MODELS),
        students=list(experiment.MODELS),
        inputs=["own", "wider"],
        sizes=["default", "teacher"],
        teacher_steps=5,
        student_steps=5,
        smoke=True,
    )
    runs = experiment.plan(args)
    assert len(runs) == 19  # copy: 2 teachers + 2 x 4 students; recall: 1 + 2 x 4
    teachers = {run.checkpoint for run in runs if run.folder.parent.name.startswith("teacher_")}
    for index, run in enumerate(runs):
        taught = [o.split("=", 1)[1] for o in run.overrides if o.startswith("teacher=")]
        if taught:  # a student comes after its teacher
            (teacher,) = taught
            assert any(str(r.checkpoint) == teacher for r in runs[:index])
    assert len(teachers) == 3
    wide = next(r for r in runs if "mlp_from_lstm_wider_inputs_teacher_size" in str(r.folder))
    assert {"teacher_inputs={max_length:40}", "student_parameters=teacher"} <= set(wide.overrides)

    args.teachers, args.students = ["lstm"], ["mlp"]  # a part: NTM-LSTM teaching NTM-MLP
    part = experiment.plan(args)
    assert len(part) == 10  # per task: 1 teacher + 4 students
    assert all("mlp_from_lstm" in str(r.folder) or "teacher_lstm" in str(r.folder) for r in part)

    run = runs[1]
    assert experiment.command(run)[-1] == f"hydra.run.dir={run.folder}"  # nothing there: fresh
    (run.folder / "checkpoints").mkdir(parents=True)
    (run.folder / "checkpoints" / "last.ckpt").touch()
    assert f"ckpt_path={run.folder / 'checkpoints' / 'last.ckpt'}" in experiment.command(run)
    (run.folder / "results.json").touch()
    assert experiment.command(run) is None  # done: not run again
    (run.folder / "checkpoints" / "last.ckpt").unlink()
    (run.folder / "results.json").unlink()
    (run.folder / "console.txt").touch()
    experiment.command(run)
    assert not run.folder.exists()  # died before its first checkpoint: started afresh
