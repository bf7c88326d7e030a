"""From a composed Hydra config to the objects of a run, and config errors as one line.

Data flows one way: config -> task (sizes) -> model -> LightningModule. Sizes are derived:
the task states its input and output widths and the model is built with them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from ntm.experiment import conversion
from ntm.experiment.data import TaskDataModule
from ntm.experiment.module import SequenceModule
from ntm.experiment.results import IN_DISTRIBUTION, Conversion

log = logging.getLogger(__name__)

#: A student sized to a parameter budget (`student_parameters`) must land this close to it.
BUDGET_TOLERANCE = 0.1

#: Short names for the config groups nested in `model/ntm.yaml`, kept so that
#: ``python train.py controller=mlp memory=small controller.hidden_size=50`` works.
GROUP_ALIASES = {"controller": "model/controller", "memory": "model/memory"}
KEY_ALIASES = {"controller.": "model.controller."}
#: Keys whose values may differ in type from their default: Lightning takes "auto", a count
#: or a list of devices.
ANY_TYPE = {"trainer.devices"}
#: torch and numpy take seeds in [0, 2**32).
SEED_LIMIT = 2**32

# For run folder names (configs/train.yaml): two runs started in the same microsecond on one
# machine still differ in their process id.
OmegaConf.register_new_resolver("pid", lambda: os.getpid(), replace=True)


class ConfigError(ValueError):
    """A configuration that cannot run; the message says what to change."""


def value_kind(default: Any) -> tuple[tuple[type, ...], str] | None:
    """The types a key whose default is `default` takes, and how to say so (None: any)."""
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int):
        return (int,), "an integer"
    if isinstance(default, float):
        return (int, float), "a number"
    return None


def check_types(cfg: DictConfig, reference: DictConfig, prefix: str = "") -> None:
    """A `ConfigError` for the first value of another type than the config files give its
    key: text for a number (``seed=abc``), a fraction for a count (``model.memory_width=1.5``),
    anything but true/false for a switch, null for a top-level section. Keys not in
    `reference`, keys that are interpolations there, and other null values are not checked."""
    for key in reference:
        name = f"{prefix}{key}"
        if key not in cfg or name in ANY_TYPE or OmegaConf.is_interpolation(reference, key):
            continue
        expected, value = reference[key], cfg[key]
        if isinstance(expected, DictConfig) and value is None and not prefix:
            # a whole section (evaluation=null): the run reads its keys. A null within one
            # (callbacks.figures=null, data.curriculum=null) turns that part off, as meant.
            hint = f" (to turn it off: {name}.enabled=false)" if "enabled" in expected else ""
            raise ConfigError(f"{name}: expected a section of settings, got null{hint}")
        if isinstance(expected, DictConfig) and isinstance(value, DictConfig):
            check_types(value, expected, f"{name}.")
            continue
        kind = value_kind(expected)
        if kind is None or value is None:
            continue
        types, wanted = kind
        # bool is a subclass of int, but a switch is no count and a count no switch
        if not isinstance(value, types) or isinstance(value, bool) != (types == (bool,)):
            raise ConfigError(f"{name}: expected {wanted}, got {value!r}")


def file_defaults() -> DictConfig | None:
    """This run's config as the files give it: the same config groups chosen, no ``key=value``
    overrides. None outside a Hydra run."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    choices = [
        f"{group}={choice}"
        for group, choice in hydra_cfg.runtime.choices.items()
        if not group.startswith("hydra") and choice is not None
    ]
    if GlobalHydra.instance().is_initialized():  # inside @hydra.main
        return compose(hydra_cfg.job.config_name, overrides=choices)
    source = next(s for s in hydra_cfg.runtime.config_sources if s.provider == "main")
    with initialize_config_dir(source.path, version_base="1.3"):
        return compose(hydra_cfg.job.config_name, overrides=choices)


def check_settings(cfg: DictConfig) -> None:
    """Every value of a train.py or evaluate.py config typed as the config files type it, and
    the top-level `seed` and `threads` in range and `flush_denormal` true or false."""
    defaults = file_defaults()
    if defaults is not None:
        check_types(cfg, defaults)
    seed, threads = cfg.get("seed", 0), cfg.threads
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"seed: expected an integer from 0 to 2**32 - 1, got {seed!r}")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads: expected an integer >= 1, got {threads!r}")
    if not isinstance(cfg.flush_denormal, bool):
        raise ConfigError(f"flush_denormal: expected true or false, got {cfg.flush_denormal!r}")


@contextmanager
def cpu_settings(cfg: DictConfig) -> Iterator[None]:
    """Torch's thread count (`threads`) and denormal flushing (`flush_denormal`) as `cfg` says;
    on leaving, the flushing is put back as it was (for a sweep's next job, a test, a user's
    session), the thread count is not.

    Flushing matters for speed only: a float32 under about 1.2e-38 is stored as a denormal,
    and arithmetic on denormals is many times slower on x86. Saturated gates make them in the
    backward pass: a step of a 3 x 512 LSTM baseline took 2.4-2.7 times as long without
    flushing (README "Training throughput")."""
    torch.set_num_threads(cfg.threads)
    was_flushing = denormals_flushed()
    if not torch.set_flush_denormal(cfg.flush_denormal) and cfg.flush_denormal:
        warnings.warn("flush_denormal: this CPU cannot flush denormals; they stay", stacklevel=3)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero (torch offers no getter)."""
    return torch.tensor(1e-39).mul(1.0).item() == 0.0


def expand_aliases(overrides: list[str]) -> list[str]:
    """Command-line overrides with the short group names spelled out:
    ``controller=mlp`` -> ``model/controller=mlp``, ``controller.hidden_size=50`` ->
    ``model.controller.hidden_size=50``; anything else unchanged."""
    expanded = []
    for override in overrides:
        for short, full in GROUP_ALIASES.items():
            if override.startswith(f"{short}="):
                override = full + override[len(short) :]
        for short, full in KEY_ALIASES.items():
            if override.startswith(short):
                override = full + override[len(short) :]
        expanded.append(override)
    return expanded


def instantiate_or_fail(node: Any, what: str, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate` with the cause of a failure as one `ConfigError` line."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"{what}: {cause}") from None
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{what}: {error}") from None


def build_task(cfg: DictConfig) -> Any:
    return instantiate_or_fail(cfg.task, "task")


def build_model(cfg: DictConfig, task: Any) -> nn.Module:
    """The model of `cfg.model` sized for `task`. `model.label` names runs and is not an
    argument of the model."""
    node = cfg.model.copy()
    with open_dict(node):
        node.pop("label", None)
    if node.get("controller") is not None and node.get("_target_") == "ntm.LSTMBaseline":
        raise ConfigError("the LSTM baseline has no controller: use model=ntm for one")
    return instantiate_or_fail(
        node, "model", input_size=task.input_size, output_size=task.output_size
    )


class Trained(NamedTuple):
    """A trained run rebuilt from its checkpoint alone."""

    config: DictConfig  # the run config train.py stored in the checkpoint
    task: Any
    model: nn.Module  # the checkpoint's weights, in eval mode, not compiled
    conversion: Conversion | None  # how it was trained from a teacher, if it was


def load_trained(path: str | Path, what: str = "ckpt_path", *, compile: bool = False) -> Trained:
    """The task and trained model of a checkpoint written by train.py, or a `ConfigError`
    naming `what`, the config key that gave the path. compile: an NTM's `compile` (its step
    compiled for calls with gradients enabled; off, evaluation runs eagerly)."""
    from ntm.experiment import checkpoints  # (it imports this module for ConfigError)

    checkpoint = checkpoints.load(path, what)
    stored = checkpoint["hyper_parameters"]
    cfg = OmegaConf.create(stored["config"])
    if "compile" in cfg.model:
        cfg.model.compile = compile
    task = build_task(cfg)
    model = build_model(cfg, task)
    checkpoints.model_weights(checkpoint, model, path, what)
    converted = stored.get("conversion")
    return Trained(cfg, task, model.eval(), Conversion(**converted) if converted else None)


def load_teacher(cfg: DictConfig, task: Any) -> Trained | None:
    """The run's teacher (`cfg.teacher`, a checkpoint), or None without one; a `ConfigError`
    when its task's widths differ from `task`'s or a conversion setting needs a teacher."""
    if not cfg.get("teacher"):
        if cfg.get("teacher_inputs"):
            raise ConfigError("teacher_inputs: wider inputs are for a student: set teacher=<ckpt>")
        if cfg.get("student_parameters") == "teacher":
            raise ConfigError("student_parameters: 'teacher' needs teacher=<checkpoint>")
        return None
    if not cfg.teacher_temperature > 0:
        raise ConfigError(f"teacher_temperature: must be > 0, got {cfg.teacher_temperature}")
    # The teacher's step is compiled when the student's is: teaching is most of a step's time.
    teacher = load_trained(cfg.teacher, "teacher", compile=cfg.model.get("compile", False))
    widths = (teacher.task.input_size, teacher.task.output_size)
    if widths != (task.input_size, task.output_size):
        raise ConfigError(
            f"teacher: {cfg.teacher} was trained on {teacher.task.name} with {widths[0]} input "
            f"and {widths[1]} output channels; this run's {task.name} has {task.input_size} "
            f"and {task.output_size}"
        )
    if teacher.task.name != task.name:
        warnings.warn(
            f"the teacher was trained on {teacher.task.name}, this run is {task.name}",
            stacklevel=2,
        )
    return teacher


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_to_budget(cfg: DictConfig, task: Any, target: int) -> int:
    """Set the model's hidden_size (the controller's, for an NTM) in `cfg` to the one whose
    parameter count is closest to `target`, other sizes as configured, and return the count.
    `cfg` itself changes, so the run's config, logs and checkpoint hold the size chosen. A
    `ConfigError` unless within `BUDGET_TOLERANCE` of `target`."""
    node = cfg.model.controller if "controller" in cfg.model else cfg.model
    step = node.get("num_heads", 1)  # a Transformer's width must divide among its heads

    def count(hidden_size: int) -> int:
        node.hidden_size = hidden_size
        return parameter_count(build_model(cfg, task))

    node.hidden_size = conversion.closest_size(count, target, step=step)
    found = count(node.hidden_size)
    log.info(
        "sized to %s parameters: hidden_size %d, %s parameters", target, node.hidden_size, found
    )
    if abs(found - target) > BUDGET_TOLERANCE * target:
        raise ConfigError(
            f"student_parameters: the closest {cfg.model.label} has {found:,} parameters "
            f"(hidden_size {node.hidden_size}), more than {BUDGET_TOLERANCE:.0%} from {target:,}"
        )
    return found


def updates_setting(cfg: DictConfig, key: str) -> int:
    """A top-level count of updates (0 when absent), or a one-line ConfigError."""
    value = cfg.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key}: expected an integer >= 0, got {value!r}")
    return value


def build(cfg: DictConfig) -> tuple[Any, TaskDataModule, SequenceModule]:
    """Task, data module and LightningModule from a composed config (nothing trained yet).

    With `cfg.teacher` the model is a student of that checkpoint (README "Conversion"): sized
    to `student_parameters` if set, trained on the teacher's outputs, on inputs from the
    task's ranges widened by `teacher_inputs`; validation stays on the task's own ranges."""
    task = build_task(cfg)
    validation = OmegaConf.to_container(cfg.validation, resolve=True)
    if IN_DISTRIBUTION not in validation:
        raise ConfigError(f"validation needs a set named {IN_DISTRIBUTION!r} (it decides solved)")
    teacher = load_teacher(cfg, task)
    target = cfg.get("student_parameters")
    if target == "teacher":
        target = parameter_count(teacher.model)
    if target is not None:
        if not isinstance(target, int) or isinstance(target, bool) or target < 1:
            raise ConfigError(
                f"student_parameters: 'teacher' or a number of parameters, got {target!r}"
            )
        size_to_budget(cfg, task, target)
    train_task = task
    if cfg.get("teacher_inputs"):
        try:
            train_task = conversion.WiderTask(task, OmegaConf.to_container(cfg.teacher_inputs))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"teacher_inputs: {error}") from None
        # Each validation set names every range, so the wider ones never reach it.
        validation = {name: {**task.difficulty, **ranges} for name, ranges in validation.items()}
    datamodule = instantiate_or_fail(cfg.data, "data", task=train_task, val_sets=validation)
    model = build_model(cfg, task)
    slots = getattr(model, "memory_slots", None)
    for name, difficulty in validation.items():
        needed = task.memory_needed(**difficulty)
        if slots is not None and needed > slots:
            warnings.warn(
                f"validation set {name!r} needs {needed} memory slots but the memory has "
                f"{slots}: expect errors there (this is what capacity experiments measure)",
                stacklevel=2,
            )
    optimizer = instantiate_or_fail(cfg.optimizer, "optimizer")
    try:  # torch checks its settings (lr >= 0, ...) on construction: now, not at step one
        optimizer(model.parameters())
    except (ValueError, TypeError) as error:
        raise ConfigError(f"optimizer: {error}") from None
    # Absent from older checkpoints' configs: their defaults, none.
    warmup_steps = updates_setting(cfg, "lr_warmup_steps")
    decay_steps = updates_setting(cfg, "lr_decay_steps")
    decay_factor = cfg.get("lr_decay_factor", 0.5)
    is_number = isinstance(decay_factor, int | float) and not isinstance(decay_factor, bool)
    if not (is_number and 0 < decay_factor <= 1):
        raise ConfigError(f"lr_decay_factor: expected a number in (0, 1], got {decay_factor!r}")
    student = {}
    if teacher is not None:
        record = conversion.record(cfg, teacher.config, parameter_count(teacher.model), target)
        student = {
            "teacher": teacher.model,
            "temperature": cfg.teacher_temperature,
            "conversion": dataclasses.asdict(record),
        }
    module = SequenceModule(
        model=model,
        optimizer=optimizer,
        val_set_names=datamodule.val_set_names,
        config=OmegaConf.to_container(cfg, resolve=True),
        warmup_steps=warmup_steps,
        decay_steps=decay_steps,
        decay_factor=float(decay_factor),
        **student,
    )
    return task, datamodule, module
