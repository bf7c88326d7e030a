"""Checkpoints: written whole or not at all, and read back with one-line errors.

Lightning's own writer goes through a temporary file in the system's temp folder and moves
it into place: a rename when both are on one filesystem, but a copy over the old checkpoint
when they are not (a local /tmp, a network run folder), and a run killed during that copy
has neither checkpoint. `AtomicCheckpointIO` writes beside the destination and renames.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ntm.experiment.config import ConfigError
from ntm.experiment.results import replace_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, with each save a `replace_atomically` of the file (the
    trainer's `plugins`, configs/trainer/default.yaml)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        replace_atomically(path, lambda file: torch.save(checkpoint, file))


def load(path: str | Path, what: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint train.py wrote at `path` (on the CPU, weights_only), or a `ConfigError`
    naming `what` (the config key that gave the path) and saying why there is none: no such
    file, not a checkpoint (corrupt, cut short, another format), or a checkpoint without the
    run config that train.py stores."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}: no such file: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu")
    except Exception as error:  # whatever the reason, the file cannot be read as one
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConfigError(
            f"{what}: {path} is not a readable checkpoint ({type(error).__name__}: {reason[:200]})"
        ) from None
    config = (
        checkpoint.get("hyper_parameters", {}).get("config")
        if isinstance(checkpoint, dict)
        else None
    )
    if config is None or "state_dict" not in checkpoint:
        raise ConfigError(f"{what}: {path} holds no run config: was it written by train.py?")
    return checkpoint


def describe(config: Mapping[str, Any]) -> str:
    """'ntm-mlp on AssociativeRecallTask': a run config's model and task, for messages."""
    return f"{config['model']['label']} on {config['task']['_target_'].rsplit('.', 1)[-1]}"


def mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str:
    """The first difference between two state dicts' names and shapes ('' if none)."""
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    if missing:
        return f"no {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    if extra:
        return f"an unexpected {extra[0]}"
    for name, tensor in expected.items():
        if tensor.shape != found[name].shape:
            return f"{name} is {tuple(found[name].shape)}, not {tuple(tensor.shape)}"
    return ""


def check_resumable(checkpoint: dict[str, Any], module: torch.nn.Module, cfg, path) -> None:
    """A `ConfigError` unless `checkpoint` can continue training `module` as `cfg` configures
    it: the same parameters and shapes (another task's widths or another controller differ)
    and the same optimiser (its state would not fit another's). Settings such as the
    learning rate may change on resume."""
    trained = checkpoint["hyper_parameters"]["config"]
    problem = mismatch(module.state_dict(), checkpoint["state_dict"])
    if problem:
        raise ConfigError(
            f"ckpt_path: {path} holds {describe(trained)}, which does not fit this run's "
            f"{describe(cfg)}: {problem}"
        )
    optimizer, configured = trained["optimizer"]["_target_"], cfg.optimizer._target_
    if optimizer != configured:
        raise ConfigError(
            f"ckpt_path: {path} was trained with {optimizer}, this run uses {configured}: "
            "resume with the same optimizer"
        )


def model_weights(
    checkpoint: dict[str, Any], model: torch.nn.Module, path, what: str = "ckpt_path"
) -> None:
    """Load the checkpoint's model weights into `model`, or a `ConfigError` when they do not
    fit the model its own config describes (a checkpoint from another version of the code)."""
    state = {
        k.removeprefix("model."): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith("model.")
    }
    problem = mismatch(model.state_dict(), state)
    if problem:
        raise ConfigError(
            f"{what}: {path}'s weights do not fit the model its config describes "
            f"({describe(checkpoint['hyper_parameters']['config'])}): {problem}"
        )
    model.load_state_dict(state)
