"""The training pipeline: configs compose, every model x task runs, resume, errors."""

import importlib.util
import itertools
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from probes import DenormalProbe
from runs import CONFIGS, ROOT, compose_train, train_py

from ntm.experiment import evaluation
from ntm.experiment.config import (
    ConfigError,
    build,
    cpu_settings,
    denormals_flushed,
    expand_aliases,
)
from ntm.experiment.results import EvaluationResults, RunSummary, read
from ntm.experiment.run import train

TASKS = ["copy", "repeat_copy", "associative_recall", "priority_sort"]
CONTROLLERS = ["lstm", "mlp", "transformer"]
GROUPS = [
    "task",
    "model",
    "model/controller",
    "model/memory",
    "optimizer",
    "trainer",
    "logger",
    "experiment",
    "debug",
]


def options(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override", [f"{group}={option}" for group in GROUPS for option in options(group)]
)
def test_every_config_option_composes_and_instantiates(override, tmp_path):
    extra = [] if override == "model=lstm_baseline" else ["model.compile=false"]
    cfg = compose_train([override, *extra], tmp_path)
    task, datamodule, module = build(cfg)
    assert module.model(torch.zeros(2, 3, task.input_size))[0].shape[-1] == task.output_size
    instantiate(cfg.optimizer)(module.parameters())
    for name, node in cfg.callbacks.items():
        assert node is None or instantiate(node) is not None, name
    if cfg.logger and "_target_" in cfg.logger:
        if "TensorBoard" in cfg.logger._target_ and not importlib.util.find_spec("tensorboard"):
            pytest.skip("the tensorboard logger needs `pip install tensorboard`")
        if "Wandb" in cfg.logger._target_ and not importlib.util.find_spec("wandb"):
            pytest.skip("the wandb logger needs `pip install wandb`")
        assert instantiate(cfg.logger) is not None
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        pytest.skip("trainer=gpu needs a CUDA GPU")
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.world_size == cfg.trainer.devices


def test_model_parts_nest_and_short_names_still_work(tmp_path):
    assert expand_aliases(["controller=mlp", "memory=small", "controller.hidden_size=5"]) == [
        "model/controller=mlp",
        "model/memory=small",
        "model.controller.hidden_size=5",
    ]
    cfg = compose_train(["controller=mlp", "memory=small", "controller.hidden_size=5"], tmp_path)
    assert cfg.model.label == "ntm-mlp"
    assert cfg.model.controller.hidden_size == 5 and cfg.model.memory_slots == 32
    baseline = compose_train(["model=lstm_baseline"], tmp_path)
    assert baseline.model.label == "lstm_baseline"
    assert "controller" not in baseline.model and "memory_slots" not in baseline.model
    paper = compose_train(["experiment=paper", "task=repeat_copy"], tmp_path)
    assert paper.task._target_ == "tasks.RepeatCopyTask" and paper.data.batch_size == 1
    assert paper.optimizer._target_ == "torch.optim.RMSprop"


def test_tuned_settings_apply_per_task_and_optimiser_and_yield_to_overrides(tmp_path):
    def lr(*overrides):
        return compose_train(list(overrides), tmp_path).optimizer.lr

    assert lr("task=copy") == 4e-3  # configs/tuned/<task>_adam.yaml
    assert lr("task=repeat_copy") == 2e-3
    assert lr("task=associative_recall") == 5e-4
    assert lr("task=priority_sort") == 1e-3  # nothing tuned: the optimiser's own
    assert lr("task=copy", "optimizer=rmsprop") == 1e-4  # tuned for Adam only
    assert lr("task=copy", "optimizer.lr=5e-4") == 5e-4
    assert lr("task=copy", "experiment=paper") == 1e-4
    assert lr("task=copy", "model=lstm_baseline") == 4e-3
    assert lr("task=associative_recall", "model=lstm_baseline") == 5e-4  # the task's, too
    batch = {c: compose_train(["task=copy", f"controller={c}"], tmp_path).data.batch_size
             for c in ("lstm", "mlp", "transformer")}  # fmt: skip
    assert batch == {"lstm": 16, "mlp": 8, "transformer": 8}
    assert compose_train(["task=associative_recall"], tmp_path).data.batch_size == 8
    # configs/task/repeat_copy.yaml: a curriculum on the repeat count, for that task only
    curriculum = compose_train(["task=repeat_copy"], tmp_path).data.curriculum
    assert curriculum == {"start": {"max_repeats": 1}, "sequences": 200000, "hold": 0}
    assert compose_train(["task=copy"], tmp_path).data.curriculum is None
    assert (
        compose_train(["task=repeat_copy", "data.curriculum=null"], tmp_path).data.curriculum
        is None
    )
    # configs/tuned/controller/adam_transformer.yaml: per controller, on every task, winning
    # over the task's setting; the trainer's clipping too.
    transformer = compose_train(["task=copy", "controller=transformer"], tmp_path)
    assert transformer.optimizer.lr == lr("task=repeat_copy", "controller=transformer")
    assert transformer.optimizer.lr == 5e-4
    assert transformer.trainer.gradient_clip_algorithm == "norm"
    assert transformer.trainer.gradient_clip_val == 1.0
    assert lr("controller=transformer", "optimizer.lr=3e-3") == 3e-3
    assert compose_train(["controller=mlp"], tmp_path).trainer.gradient_clip_val == 10.0
    # configs/tuned/controller/adam_mlp.yaml
    assert lr("task=copy", "controller=mlp") == lr("task=repeat_copy", "controller=mlp") == 1e-3
    assert lr("task=associative_recall", "controller=mlp") == 1e-3
    assert lr("task=copy", "controller=mlp", "optimizer=rmsprop") == 1e-4
    # configs/tuned/controller_task/adam_mlp_repeat_copy.yaml: batch 4 at the same cap in
    # sequences (twice the steps) and the same validation interval in sequences
    mlp_repeat = compose_train(["task=repeat_copy", "controller=mlp"], tmp_path)
    assert mlp_repeat.data.batch_size == 4 and mlp_repeat.optimizer.lr == 1e-3
    assert (mlp_repeat.trainer.max_steps, mlp_repeat.trainer.val_check_interval) == (100000, 400)
    mlp_batch8 = compose_train(
        ["task=repeat_copy", "controller=mlp", "data.batch_size=8"], tmp_path
    )
    assert mlp_batch8.data.batch_size == 8  # the command line still wins
    lstm_repeat = compose_train(["task=repeat_copy", "controller=lstm"], tmp_path)
    assert lstm_repeat.data.batch_size == 8 and lstm_repeat.trainer.max_steps == 50000
    # configs/tuned/controller_task/adam_lstm_repeat_copy.yaml: the end marker later, for
    # the LSTM controller only
    assert lstm_repeat.task.end_marker_from_repeats == 3
    assert mlp_repeat.task.end_marker_from_repeats == 1
    paper_lstm = compose_train(["task=repeat_copy", "experiment=paper"], tmp_path)
    assert paper_lstm.task.end_marker_from_repeats == 1  # Adam's only
    paper_mlp = ["task=repeat_copy", "experiment=paper", "model/controller=mlp"]
    assert compose_train(paper_mlp, tmp_path).data.batch_size == 1  # Adam's only
    assert compose_train(["task=copy", "controller=mlp"], tmp_path).data.batch_size == 8
    # configs/tuned/controller_task/adam_transformer_associative_recall.yaml: per controller
    # and task, winning over both; the controller's clipping stays.
    recall = compose_train(["task=associative_recall", "controller=transformer"], tmp_path)
    assert recall.optimizer.lr == 2.5e-4 and recall.trainer.gradient_clip_val == 1.0
    assert lr("task=associative_recall", "model/controller=transformer") == 2.5e-4
    assert lr("task=associative_recall", "controller=transformer", "optimizer=rmsprop") == 1e-4
    # configs/tuned/controller_task/adam_transformer_copy.yaml and ..._repeat_copy.yaml: a
    # model setting, per task
    assert transformer.model.controller.window == 4
    repeat = compose_train(["task=repeat_copy", "controller=transformer"], tmp_path)
    assert repeat.model.controller.window == 4 and repeat.optimizer.lr == 5e-4
    assert recall.model.controller.window is None
    windowless = compose_train(
        ["task=copy", "controller=transformer", "controller.window=null"], tmp_path
    )
    assert windowless.model.controller.window is None


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", [*CONTROLLERS, "lstm_baseline"])
def test_fast_dev_run_every_model_and_task(task, model, tmp_path):
    overrides = [f"task={task}", "debug=fast"]
    if model == "lstm_baseline":
        overrides += ["model=lstm_baseline"]
    else:
        overrides += [f"controller={model}", "model.compile=false"]
    summary = train(compose_train(overrides, tmp_path), tmp_path)
    assert summary.steps == 1
    assert summary.model == ("lstm_baseline" if model == "lstm_baseline" else f"ntm-{model}")
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.metrics.values())


def test_mixed_precision_trains_a_config_of_fused_adam_unfused_with_clipping(tmp_path):
    """trainer=gpu's bf16 mixed precision, here on the CPU: Lightning refuses to clip a fused
    optimiser's gradients under mixed precision, so the module trains Adam unfused there."""
    overrides = ["debug=fast", "model.compile=false", "+trainer.precision=bf16-mixed"]
    cfg = compose_train(overrides, tmp_path)
    assert cfg.optimizer.fused and cfg.trainer.gradient_clip_val
    summary = train(cfg, tmp_path)
    assert summary.steps == 1
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.metrics.values())
    # what trains: unfused from the first step on (on_train_start re-applies the settings)
    _, datamodule, module = build(cfg)
    trainer = instantiate(cfg.trainer, logger=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule)
    assert trainer.global_step == 1
    assert not any(group["fused"] for group in trainer.optimizers[0].param_groups)


def test_short_training_lowers_the_loss_resumes_and_records_what_compare_reads(tmp_path):
    overrides = [
        "debug=steps",
        "memory=small",
        "model.compile=false",
        "trainer.max_steps=60",
        "optimizer.lr=3e-3",
        "trainer.val_check_interval=30",
        "evaluation.grid.length=[5,10]",
        "evaluation.capacity.slots=[16,32]",
        "evaluation.capacity.grid.length=[5]",
    ]
    cfg = compose_train(overrides, tmp_path)
    summary = train(cfg, tmp_path)
    assert summary.steps == 60
    first = train(
        compose_train([*overrides, "trainer.max_steps=1"], tmp_path / "one"), tmp_path / "one"
    )
    assert summary.metrics["train/loss"] < first.metrics["train/loss"]
    assert list((tmp_path / "figures").glob("in_distribution_step*.png"))
    assert read(tmp_path / "summary.json", RunSummary) == summary
    results = read(tmp_path / "results.json", EvaluationResults)
    assert [r["length"] for r in results.generalisation.rows] == [5, 10]
    assert [r["memory_slots"] for r in results.capacity.rows] == [16, 32]
    assert (tmp_path / "generalisation.png").stat().st_size > 1000
    assert (tmp_path / "capacity.png").stat().st_size > 1000
    assert (tmp_path / "diagnostics.png").stat().st_size > 1000
    assert len(results.generalisation.rows[1]["position_errors"]) == 10

    import compare  # what training wrote is what the comparison reads

    assert compare.main([str(tmp_path), "--out", str(tmp_path / "comparison")]) == 0
    table = (tmp_path / "comparison" / "comparison.md").read_text()
    assert "| ntm-lstm | 2 |" in table  # the run and its one-step sibling

    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last)  # plain values only: loads with weights_only=True
    assert checkpoint["global_step"] == 60
    resumed_dir = tmp_path / "resumed"
    resumed = train(
        compose_train([*overrides, "trainer.max_steps=70", f"ckpt_path={last}"], resumed_dir),
        resumed_dir,
    )
    assert resumed.steps == 70
    assert resumed.sequences_seen == 70 * cfg.data.batch_size
    # its training time spans both sessions, as its sequences do (so sequences/s holds)
    assert 0 < checkpoint["training_seconds"] < resumed.wall_time_s

    # Standalone evaluation of the checkpoint with a resized memory, into its own folder: the
    # run's records stay as training left them.
    records = {p: p.read_bytes() for p in tmp_path.glob("*.*")}
    evaluated = subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            f"ckpt_path={last}",
            "evaluation.grid={length:[3]}",
            "evaluation.capacity.slots=[64]",
            "evaluation.sequences=4",
            f"hydra.run.dir={tmp_path}/evaluation",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, WANDB_MODE="disabled"),
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    results = read(tmp_path / "evaluation" / "results.json", EvaluationResults)
    assert [r["length"] for r in results.generalisation.rows] == [3]
    assert [r["memory_slots"] for r in results.capacity.rows] == [64]
    assert results.checkpoint == str(last) and results.model == "ntm-lstm"
    assert {p: p.read_bytes() for p in tmp_path.glob("*.*")} == records


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.read_heads=0", "at least one read and one write head"),
        ("model.memory_width=0", "memory_width must be >= 1"),
        ("task.min_length=5", None),  # fine on its own: min 5 <= max 20
        ("task.min_length=30", "min_length"),
        ("task.max_length=-1", "max_length"),
        ("lr_warmup_steps=-1", "lr_warmup_steps: expected an integer >= 0, got -1"),
        ("lr_decay_steps=0.5", "lr_decay_steps: expected an integer >= 0, got 0.5"),
        ("lr_decay_factor=0", r"lr_decay_factor: expected a number in \(0, 1\], got 0"),
        ("lr_decay_factor=true", r"lr_decay_factor: expected a number in \(0, 1\], got True"),
        ("lr_decay_factor=1.5", r"lr_decay_factor: expected a number in \(0, 1\], got 1.5"),
        ("data.curriculum={start:{max_length:30},sequences:10}", "got max_length=30 > 20"),
    ],
)
def test_bad_sizes_fail_before_training_with_one_message(override, message, tmp_path):
    cfg = compose_train([override, "debug=fast", "model.compile=false"], tmp_path)
    if message is None:
        assert build(cfg)[0].difficulty["min_length"] == 5
        return
    with pytest.raises(ConfigError, match=message):
        build(cfg)


def flushing_supported() -> bool:
    """Whether torch can flush denormals here (asked by setting the mode it is in)."""
    return torch.set_flush_denormal(denormals_flushed())


needs_flushing = pytest.mark.skipif(
    not flushing_supported(), reason="this CPU cannot flush denormals"
)


@needs_flushing
def test_cpu_settings_flush_denormals_as_configured_and_put_the_setting_back():
    tiny = torch.tensor(1e-39)  # a float32 denormal
    for before, flush in itertools.product((False, True), repeat=2):
        torch.set_flush_denormal(before)
        with cpu_settings(OmegaConf.create({"threads": 1, "flush_denormal": flush})):
            assert denormals_flushed() is flush
            assert (tiny * 1.0).item() == (0.0 if flush else pytest.approx(1e-39))
        assert denormals_flushed() is before
    torch.set_flush_denormal(False)
    flushing = cpu_settings(OmegaConf.create({"threads": 1, "flush_denormal": True}))
    with pytest.raises(RuntimeError), flushing:  # put back when the run fails, too
        raise RuntimeError
    assert not denormals_flushed()


@needs_flushing
@pytest.mark.parametrize("flush", [True, False])
def test_training_flushes_denormals_unless_told_not_to(flush, tmp_path):
    DenormalProbe.seen.clear()
    probe = "+callbacks.probe._target_=probes.DenormalProbe"
    overrides = ["debug=fast", "model=lstm_baseline", probe, f"flush_denormal={flush}"]
    train(compose_train(overrides, tmp_path), tmp_path)
    assert DenormalProbe.seen == [flush]
    assert not denormals_flushed()


@needs_flushing
def test_evaluate_py_flushes_denormals_as_training_does(tmp_path, monkeypatch):
    overrides = ["debug=steps", "model=lstm_baseline", "task.max_length=2", "logger=none"]
    overrides += ["callbacks.figures=null", "evaluation.enabled=false"]
    train(compose_train(overrides, tmp_path), tmp_path)
    seen, evaluate_model = [], evaluation.evaluate_model

    def recording(*args, **kwargs):
        seen.append(denormals_flushed())
        return evaluate_model(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_model", recording)
    cfg = {
        "ckpt_path": str(tmp_path / "checkpoints" / "best.ckpt"),
        "threads": 1,
        "flush_denormal": True,
        "evaluation": {"grid": {"length": [2]}, "capacity": {}},
    }
    evaluation.evaluate_checkpoint(OmegaConf.create(cfg), tmp_path / "evaluated")
    assert seen == [True]
    assert not denormals_flushed()


def test_validation_longer_than_memory_warns(tmp_path):
    cfg = compose_train(["model.memory_slots=16", "debug=fast"], tmp_path)
    with pytest.warns(UserWarning, match="needs 40 memory slots but the memory has 16"):
        build(cfg)


def test_cli_errors_are_one_clear_message(tmp_path):
    unknown = train_py("controller=gru", cwd=tmp_path)
    assert unknown.returncode != 0
    assert "controller/gru" in unknown.stderr and "lstm" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    bad = train_py("debug=fast", "model.write_heads=0", cwd=tmp_path)
    assert bad.returncode == 2
    assert "error: model: " in bad.stderr and "write head" in bad.stderr
    assert "Traceback" not in bad.stderr

    section = train_py("debug=fast", "evaluation=null", cwd=tmp_path)
    assert section.returncode == 2 and "Traceback" not in section.stderr
    assert "error: evaluation: expected a section of settings, got null" in section.stderr
    assert "evaluation.enabled=false" in section.stderr

    baseline = train_py("debug=fast", "model=lstm_baseline", "controller=mlp", cwd=tmp_path)
    assert baseline.returncode == 2 and "Traceback" not in baseline.stderr
    assert "error: the LSTM baseline has no controller: use model=ntm" in baseline.stderr


class LearningRates(L.Callback):
    """The learning rate of every update."""

    def __init__(self):
        self.rates = []

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.rates.append(optimizer.param_groups[0]["lr"])


def fit_recording_rates(overrides, tmp_path, max_steps, ckpt_path=None):
    """Trains the small baseline on copy; returns the trainer and the rate of every update."""
    overrides = ["task=copy", "task.max_length=2", "optimizer.lr=0.01", *overrides]
    overrides += ["model=lstm_baseline", "logger=none", "callbacks.figures=null"]
    cfg = compose_train([*overrides, f"trainer.max_steps={max_steps}"], tmp_path)
    _, data, module = build(cfg)
    rates = LearningRates()
    trainer = L.Trainer(
        max_steps=max_steps, callbacks=[rates], logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer, rates.rates


def test_warmup_raises_the_learning_rate_linearly_and_resumes_where_it_stood(tmp_path):
    overrides = ["lr_warmup_steps=4"]

    def fit(max_steps, ckpt_path=None):
        return fit_recording_rates(overrides, tmp_path, max_steps, ckpt_path)

    _, rates = fit(6)
    assert rates == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
    first, _ = fit(2)
    first.save_checkpoint(tmp_path / "two.ckpt")
    _, resumed = fit(6, ckpt_path=str(tmp_path / "two.ckpt"))
    assert resumed == pytest.approx(rates[2:])
    overrides[0] = "lr_warmup_steps=8"  # configured settings win on resume, as lr does
    _, longer = fit(4, ckpt_path=str(tmp_path / "two.ckpt"))
    assert longer == pytest.approx([0.00375, 0.005])


def test_step_decay_multiplies_the_rate_every_n_updates_with_a_warmup_and_on_resume(tmp_path):
    overrides = ["lr_warmup_steps=2", "lr_decay_steps=3", "lr_decay_factor=0.5"]
    first, rates = fit_recording_rates(overrides, tmp_path, 7)
    assert rates == pytest.approx([0.005, 0.01, 0.01, 0.005, 0.005, 0.005, 0.0025])
    first.save_checkpoint(tmp_path / "seven.ckpt")
    _, resumed = fit_recording_rates(overrides, tmp_path, 9, str(tmp_path / "seven.ckpt"))
    assert resumed == pytest.approx([0.0025, 0.0025])
    overrides[2] = "lr_decay_factor=0.1"  # the configured schedule wins on resume
    _, changed = fit_recording_rates(overrides, tmp_path, 9, str(tmp_path / "seven.ckpt"))
    assert changed == pytest.approx([0.0001, 0.0001])
    plain, without = fit_recording_rates(["lr_decay_steps=0"], tmp_path, 4)
    assert without == pytest.approx([0.01] * 4)
    plain.save_checkpoint(tmp_path / "plain.ckpt")  # no schedule in it: it starts at step 4
    _, added = fit_recording_rates(overrides, tmp_path, 7, str(tmp_path / "plain.ckpt"))
    assert added == pytest.approx([0.001, 0.001, 0.0001])  # the factor is 0.1 by now
