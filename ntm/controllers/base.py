"""The controller protocol and the registry that finds controllers by name.

A controller maps one step's input to an output and its own next state:
``output, next_state = controller(x, state)`` with x (b, input_size) -> output (b, output_size).
State is whatever the controller needs (a tuple of tensors, or an empty tuple), built by
``initial_state(batch_size, device=..., dtype=...)`` and never stored on the module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

State = Any


class Controller(nn.Module):
    """Base class of controllers; subclasses set `output_size` and implement the two methods."""

    output_size: int

    def initial_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> State:
        raise NotImplementedError

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError


_REGISTRY: dict[str, type[Controller]] = {}
C = TypeVar("C", bound=type[Controller])


def register(name: str) -> Callable[[C], C]:
    """Class decorator: make a controller available as ``create(name, ...)`` and in configs."""

    def decorate(cls: C) -> C:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a controller named {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls

    return decorate


def available() -> list[str]:
    """Names of the registered controllers."""
    return sorted(_REGISTRY)


def name_of(controller: Controller) -> str:
    """The registered name of a controller's class (its class name if unregistered)."""
    for name, cls in _REGISTRY.items():
        if type(controller) is cls:
            return name
    return type(controller).__name__


def create(name: str, *, input_size: int, **options: Any) -> Controller:
    """Build the controller registered as `name` with the given input width and options."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown controller {name!r}; registered controllers: {available()}")
    return _REGISTRY[name](input_size=input_size, **options)
