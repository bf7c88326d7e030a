"""ntm: Neural Turing Machines (Graves et al. 2014) in PyTorch, with pluggable controllers."""

from ntm import addressing, controllers, memory
from ntm.baselines import LSTMBaseline
from ntm.model import NTM, NTMCell, NTMState, Trace

__all__ = [
    "NTM",
    "LSTMBaseline",
    "NTMCell",
    "NTMState",
    "Trace",
    "addressing",
    "controllers",
    "memory",
]
__version__ = "0.1.0"
