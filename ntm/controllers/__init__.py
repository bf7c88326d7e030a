"""Pluggable controllers, found by name: ``create("lstm", input_size=..., hidden_size=...)``.

Register your own with ``@register("name")`` on a `Controller` subclass.
"""

from ntm.controllers.base import Controller, available, create, name_of, register
from ntm.controllers.lstm import LSTMController
from ntm.controllers.mlp import MLPController
from ntm.controllers.transformer import TransformerController

__all__ = [
    "Controller",
    "LSTMController",
    "MLPController",
    "TransformerController",
    "available",
    "create",
    "name_of",
    "register",
]
