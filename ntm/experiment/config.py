"""From a composed Hydra config to the objects of a run, and config errors as one line.

Data flows one way: config -> task (sizes) -> model -> LightningModule. Sizes are derived:
the task states its input and output widths and the model is built with them.
"""

from __future__ import annotations

import warnings
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from ntm.experiment.data import TaskDataModule
from ntm.experiment.module import SequenceModule
from ntm.experiment.results import IN_DISTRIBUTION

#: Short names for the config groups nested in `model/ntm.yaml`, kept so that
#: ``python train.py controller=mlp memory=small controller.hidden_size=50`` works.
GROUP_ALIASES = {"controller": "model/controller", "memory": "model/memory"}
KEY_ALIASES = {"controller.": "model.controller."}


class ConfigError(ValueError):
    """A configuration that cannot run; the message says what to change."""


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
    return instantiate_or_fail(
        node, "model", input_size=task.input_size, output_size=task.output_size
    )


def build(cfg: DictConfig) -> tuple[Any, TaskDataModule, SequenceModule]:
    """Task, data module and LightningModule from a composed config (nothing trained yet)."""
    task = build_task(cfg)
    validation = OmegaConf.to_container(cfg.validation, resolve=True)
    if IN_DISTRIBUTION not in validation:
        raise ConfigError(f"validation needs a set named {IN_DISTRIBUTION!r} (it decides solved)")
    datamodule = instantiate_or_fail(cfg.data, "data", task=task, val_sets=validation)
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
    module = SequenceModule(
        model=model,
        optimizer=instantiate_or_fail(cfg.optimizer, "optimizer"),
        val_set_names=datamodule.val_set_names,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    return task, datamodule, module
