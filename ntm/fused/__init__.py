"""A whole NTM sequence as one autograd function: the time loop in C++, the rest in PyTorch.

`NTM(fused=True)` trains through `run`. The recurrent part of a sequence (controller
recurrence, heads, addressing, read, write; `sequence.cpp`) runs forward in one call and
backward in one call, so a step costs no graph call and no per-op dispatch; what is not
recurrent stays in PyTorch as a few large matrix products over all steps at once: the input's
share of the controller's pre-activations, the output layer, and every parameter gradient.
Numerically it is the same function as `NTMCell` (tests compare values and gradients, and
gradcheck it in float64), for an LSTM or MLP controller of one layer, any number of read heads,
one write head, on the CPU, in float32 or float64, outside autocast; `unsupported` says why
any other model is not.

The library is built on first use with the system's C++ compiler (about 6 s; `prepare`
starts it in the background) into ``$TORCH_NTM_CACHE`` (default ``~/.cache/torch-ntm``), keyed
by the source and the flags, and reused after. Without a compiler `NTM` falls back to its
PyTorch step, with a warning.

Axes: t time, b batch, i input width, g controller pre-activations, d controller width,
q all read vectors (r heads * w), p the heads' raw parameters, h heads, n slots, w word width.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ntm.controllers.lstm import LSTMController
from ntm.controllers.mlp import MLPController

SOURCE = Path(__file__).with_name("sequence.cpp")
# -march=native: this machine's vector width (the cache key names the CPU, see _cpu);
# -fopenmp-simd: the `omp simd` loops (vectorised reductions and libmvec), no OpenMP threads.
FLAGS = [
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fopenmp-simd",
    "-shared",
    "-fPIC",
    "-std=c++17",
]
LSTM, MLP = 0, 1


class FusedUnavailable(RuntimeError):
    """The C++ library could not be built or loaded here (no compiler, say)."""


class _Sequence(ctypes.Structure):
    """Mirrors `struct Sequence` in sequence.cpp: sizes, then pointers in the same order."""

    _sizes = ["kind", "steps", "batch", "width", "reads_width", "slots", "word", "read_heads",
              "shifts", "params"]  # fmt: skip
    _pointers = [
        "input_gates", "reads_weight", "reads_weight_t", "hidden_weight", "hidden_weight_t",
        "heads_weight", "heads_weight_t", "heads_bias", "memory0", "weights0", "reads0", "hidden0",
        "cell0", "hidden", "cell", "gates", "raw", "reads", "memory", "similarity", "content",
        "gated", "shifted", "weights", "grad_hidden", "grad_reads", "grad_memory_final",
        "grad_weights_final", "grad_cell_final", "grad_gates", "grad_raw", "grad_memory0",
        "grad_weights0", "grad_reads0", "grad_hidden0", "grad_cell0", "gemm",
    ]  # fmt: skip
    _fields_ = [(name, ctypes.c_int64) for name in _sizes] + [
        (name, ctypes.c_void_p) for name in _pointers
    ]


def _cache_dir() -> Path:
    return Path(os.environ.get("TORCH_NTM_CACHE", Path.home() / ".cache" / "torch-ntm"))


def library() -> ctypes.CDLL:
    """The compiled library, built on first use; raises `FusedUnavailable` if it cannot be."""
    loaded = _load()
    if isinstance(loaded, str):
        raise FusedUnavailable(loaded)
    return loaded


def prepare() -> None:
    """Start building (or loading) the library in a background thread, so that the first
    fused call finds it ready: `train.py` calls this before its slow imports."""
    threading.Thread(target=_load, daemon=True).start()


_build_lock = threading.Lock()


@cache
def _load() -> ctypes.CDLL | str:
    """The library, or why there is none (cached either way: a failed build is not retried)."""
    with _build_lock:  # `prepare`'s thread and the first call: one build, the other waits
        return _build_and_load()


def _cpu() -> str:
    """The CPU's model and instruction-set flags: a library built with -march=native for one
    CPU may crash on another sharing the cache (a cluster's home directory)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part")
    return platform.machine() + "".join(line for line in lines[:40] if line.startswith(wanted))


def _build_and_load() -> ctypes.CDLL | str:
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        return "no C++ compiler found (set CXX)"
    key = hashlib.sha256(
        SOURCE.read_bytes() + " ".join([compiler, *FLAGS, _cpu()]).encode()
    ).hexdigest()[:16]
    path = _cache_dir() / f"sequence-{key}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Built under a temporary name and renamed: concurrent runs never load half a file.
            with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
                built = Path(scratch) / path.name
                command = [compiler, *FLAGS, str(SOURCE), "-o", str(built)]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    return f"{compiler} failed: {result.stderr.strip()[-500:]}"
                os.replace(built, path)
        lib = ctypes.CDLL(str(path))
    except OSError as error:
        return f"cannot build or load {path}: {error}"
    for name in ("ntm_forward_f32", "ntm_forward_f64", "ntm_backward_f32", "ntm_backward_f64"):
        getattr(lib, name).argtypes = [ctypes.POINTER(_Sequence)]
        getattr(lib, name).restype = None
    return lib


def available() -> bool:
    """Whether the library builds and loads here (warns once with the reason if not)."""
    try:
        library()
    except FusedUnavailable as error:
        _warn_once(str(error))
        return False
    return True


@cache
def _warn_once(reason: str) -> None:
    warnings.warn(f"fused NTM step unavailable, using the PyTorch step: {reason}", stacklevel=3)


# From this batch size on, the controller's and heads' products inside the time loop go to
# PyTorch's own BLAS (MKL on x86): 13 % more sequences a second at batch 32 (README "Training
# throughput"). At batch 8 and 16 it was faster too, but its rounding differs from the
# products here, and the default run (batch 16) is measured to solve 10 of 10 seeds with
# theirs: on BLAS's it was not measured again (on a build with both BLAS and another summation
# order, seed 2 of the 5 benchmark seeds was not solved within 300 s).
BLAS_MIN_BATCH = 32


@cache
def _blas_gemm(dtype: torch.dtype) -> int | None:
    """The address of the Fortran BLAS gemm (sgemm_ or dgemm_) that PyTorch's CPU library
    exports, or None where it exports none, or one that gets a small product wrong when called
    as sequence.cpp calls it: the sequence then uses its own products."""
    suffix = {"linux": ".so", "darwin": ".dylib"}.get(platform.system().lower())
    if suffix is None:
        return None
    try:
        exports = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / f"libtorch_cpu{suffix}"))
        gemm = getattr(exports, "sgemm_" if dtype == torch.float32 else "dgemm_")
    except (OSError, AttributeError):
        return None
    # c += a @ b, (2, 3) @ (3, 4), row-major, as sequence.cpp calls it: c^T = b^T a^T
    # column-major, sizes as zero-extended 64-bit integers.
    a = torch.arange(1.0, 7.0, dtype=dtype).view(2, 3)
    b = torch.arange(-6.0, 6.0, dtype=dtype).view(3, 4)
    c = torch.ones(2, 4, dtype=dtype)
    number = ctypes.c_double if dtype == torch.float64 else ctypes.c_float
    one = ctypes.byref(number(1.0))

    def size(value: int) -> Any:
        return ctypes.byref(ctypes.c_int64(value))

    def address(tensor: Tensor) -> ctypes.c_void_p:
        return ctypes.c_void_p(tensor.data_ptr())

    gemm.restype = None
    gemm(b"N", b"N", size(4), size(2), size(3), one, address(b), size(4), address(a), size(3),
         one, address(c), size(4))  # fmt: skip
    if not torch.equal(c, a @ b + 1):
        return None
    return ctypes.cast(gemm, ctypes.c_void_p).value


def _gemm_for(dtype: torch.dtype, batch: int, *sizes: int) -> int | None:
    """BLAS's gemm for a batch this large, if there is one and every size fits its integers."""
    if batch < BLAS_MIN_BATCH or max(batch, *sizes) >= 2**31:
        return None
    return _blas_gemm(dtype)


def unsupported(cell: Any, x: Tensor) -> str | None:
    """Why `cell` (an `NTMCell`) cannot run input `x` fused, or None if it can."""
    controller = cell.controller
    if isinstance(controller, LSTMController):
        if len(controller.cells) != 1:
            return "the LSTM controller has more than one layer"
    elif isinstance(controller, MLPController):
        if len(controller.net) != 2:
            return "the MLP controller has more than one layer"
    else:
        return f"controller {type(controller).__name__} is neither the LSTM nor the MLP"
    if cell.heads.write_heads != 1:
        return "more than one write head"
    if x.device.type != "cpu":
        return f"tensors on {x.device.type}, not the CPU"
    if x.dtype not in (torch.float32, torch.float64) or x.dtype != cell.output.weight.dtype:
        return f"dtype {x.dtype} (float32 or float64, as the parameters)"
    if torch.is_autocast_enabled("cpu"):
        return "autocast is on"
    return None


def _pointer(tensor: Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _zeros_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad.contiguous()


class FusedSequence(torch.autograd.Function):
    """The recurrent part of a sequence; see the module docstring and sequence.cpp.

    Inputs: input_gates (t, b, g), reads_weight (g, q), hidden_weight (g, d) (empty for the
    MLP), heads_weight (p, d), heads_bias (p), and the initial state: memory0 (b, w, n), word-major
    (the transpose of the model's), weights0 (b, h, n), reads0 (b, q), hidden0 (b, d), cell0
    (b, d) (zeros for the MLP). Outputs: hidden (t, b, d) and reads (t, b, q) of every step,
    and the final memory (b, w, n), weights (b, h, n) and cell (b, d).
    """

    @staticmethod
    def forward(ctx, kind, read_heads, input_gates, reads_weight, hidden_weight, heads_weight,
                heads_bias, memory0, weights0, reads0, hidden0, cell0):  # fmt: skip
        steps, batch, gates = input_gates.shape
        heads, slots = weights0.shape[1:]
        word, width, params = reads0.shape[1] // read_heads, heads_weight.shape[1], len(heads_bias)
        shifts = (params - 2 * word) // heads - word - 3
        head_params = heads * (word + 3 + shifts) + 2 * word  # what params must be, exactly
        _check_sizes(
            input_gates=(input_gates, (steps, batch, 4 * width if kind == LSTM else width)),
            memory0=(memory0, (batch, word, slots)),
            weights0=(weights0, (batch, read_heads + 1, slots)),
            reads0=(reads0, (batch, read_heads * word)),
            reads_weight=(reads_weight, (gates, read_heads * word)),
            hidden_weight=(hidden_weight, (gates, width) if kind == LSTM else (0, 0)),
            heads_weight=(heads_weight, (head_params, width)),
            heads_bias=(heads_bias, (head_params,)),
            hidden0=(hidden0, (batch, width)),
            cell0=(cell0, (batch, width)),
        )
        if shifts < 1 or shifts % 2 == 0:
            raise ValueError(f"fused sequence: {params} head parameters leave {shifts} shifts")
        new = input_gates.new_empty
        saved = {
            "hidden": new(steps, batch, width),
            "cell": new(steps, batch, width) if kind == LSTM else None,
            "gates": new(steps, batch, gates),
            "raw": new(steps, batch, params),
            "reads": new(steps, batch, read_heads * word),
            "memory": new(steps + 1, batch, word, slots),
            **{
                name: new(steps, batch, heads, slots)
                for name in ("similarity", "content", "gated", "shifted", "weights")
            },
        }
        inputs = {
            "input_gates": input_gates,
            "reads_weight": reads_weight,
            "reads_weight_t": reads_weight.t().contiguous(),
            "hidden_weight": hidden_weight,
            "hidden_weight_t": hidden_weight.t().contiguous(),
            "heads_weight": heads_weight,
            "heads_weight_t": heads_weight.t().contiguous(),
            "heads_bias": heads_bias,
            "memory0": memory0,
            "weights0": weights0,
            "reads0": reads0,
            "hidden0": hidden0,
            "cell0": cell0,
        }
        sizes = dict(kind=kind, steps=steps, batch=batch, width=width,
                     reads_width=read_heads * word, slots=slots, word=word,
                     read_heads=read_heads, shifts=shifts, params=params)  # fmt: skip
        pointers = {k: _pointer(v) for k, v in {**inputs, **saved}.items()}
        gemm = _gemm_for(input_gates.dtype, batch, gates, params, width, read_heads * word)
        sequence = _Sequence(**sizes, **pointers, gemm=gemm)
        _call("forward", input_gates.dtype, sequence)
        # Everything through save_for_backward: checked for in-place changes, and freed (or
        # offloaded by saved-tensor hooks) with the graph.
        ctx.sizes, ctx.gemm = sizes, gemm
        ctx.names = [*inputs, *saved]
        ctx.save_for_backward(*inputs.values(), *saved.values())
        memory_final = saved["memory"][-1].clone()
        weights_final = saved["weights"][-1].clone()
        cell_final = saved["cell"][-1].clone() if kind == LSTM else hidden0.new_zeros(0)
        return saved["hidden"], saved["reads"], memory_final, weights_final, cell_final

    @staticmethod
    @torch.autograd.function.once_differentiable  # no double backward through the C++
    def backward(ctx, grad_hidden, grad_reads, grad_memory, grad_weights, grad_cell):
        sizes = ctx.sizes
        saved = dict(zip(ctx.names, ctx.saved_tensors, strict=True))  # inputs and buffers
        hidden, reads = saved["hidden"], saved["reads"]
        lstm = sizes["kind"] == LSTM
        grads = {
            "grad_hidden": _zeros_if_none(grad_hidden, hidden),
            "grad_reads": _zeros_if_none(grad_reads, reads),
            "grad_memory_final": _zeros_if_none(grad_memory, saved["memory0"]),
            "grad_weights_final": _zeros_if_none(grad_weights, saved["weights0"]),
            "grad_cell_final": _zeros_if_none(grad_cell, saved["cell0"]) if lstm else None,
            "grad_gates": torch.empty_like(saved["gates"]),
            "grad_raw": torch.empty_like(saved["raw"]),
            "grad_memory0": torch.empty_like(saved["memory0"]),
            "grad_weights0": torch.empty_like(saved["weights0"]),
            "grad_reads0": torch.empty_like(saved["reads0"]),
            "grad_hidden0": torch.zeros_like(saved["hidden0"]),
            "grad_cell0": torch.zeros_like(saved["cell0"]),
        }
        pointers = {k: _pointer(v) for k, v in {**saved, **grads}.items()}
        _call("backward", hidden.dtype, _Sequence(**sizes, **pointers, gemm=ctx.gemm))

        # Parameter gradients: one product over all steps each, (t b) as one axis.
        grad_gates, grad_raw = grads["grad_gates"].flatten(0, 1), grads["grad_raw"].flatten(0, 1)
        previous_reads = torch.cat([saved["reads0"][None], reads[:-1]]).flatten(0, 1)
        grad_hidden_weight = None
        if lstm:
            previous_hidden = torch.cat([saved["hidden0"][None], hidden[:-1]]).flatten(0, 1)
            grad_hidden_weight = grad_gates.t() @ previous_hidden  # (t b) g, (t b) d -> g d
        return (
            None,
            None,
            grads["grad_gates"],
            grad_gates.t() @ previous_reads,  # (t b) g, (t b) q -> g q
            grad_hidden_weight,
            grad_raw.t() @ hidden.flatten(0, 1),  # (t b) p, (t b) d -> p d
            grad_raw.sum(0),
            grads["grad_memory0"],
            grads["grad_weights0"],
            grads["grad_reads0"],
            grads["grad_hidden0"] if lstm else None,
            grads["grad_cell0"] if lstm else None,
        )


def _check_sizes(**tensors: tuple[Tensor, tuple[int, ...]]) -> None:
    """The C++ code trusts every size: a wrong one would read or write out of bounds there."""
    dtype = tensors["input_gates"][0].dtype
    for name, (tensor, shape) in tensors.items():
        if tuple(tensor.shape) != shape or not tensor.is_contiguous():
            raise ValueError(
                f"fused sequence: {name} has shape {tuple(tensor.shape)}, "
                f"expected {shape}, contiguous"
            )
        if tensor.dtype != dtype or tensor.device.type != "cpu":
            raise ValueError(f"fused sequence: {name} is {tensor.dtype} on {tensor.device}")


def _call(direction: str, dtype: torch.dtype, sequence: _Sequence) -> None:
    suffix = {torch.float32: "f32", torch.float64: "f64"}[dtype]
    getattr(library(), f"ntm_{direction}_{suffix}")(ctypes.byref(sequence))


def run(cell: Any, x: Tensor, state: Any) -> tuple[Tensor, Any]:
    """`NTMCell` over a whole sequence, fused: x (b, t, i) -> logits (b, t, o), final state.

    The caller checks `unsupported(cell, x)` first. Same results as stepping `cell`.
    """
    from ntm.model import NTMState  # here: ntm.model imports this module

    controller, heads = cell.controller, cell.heads
    batch, input_size = x.shape[0], cell.input_size
    lstm = isinstance(controller, LSTMController)
    if lstm:
        layer = controller.cells[0]
        weight, bias = layer.weight_ih, layer.bias_ih + layer.bias_hh
        hidden_weight = layer.weight_hh
        hidden0, cell0 = state.controller[0][0], state.controller[1][0]
    else:
        layer = controller.net[0]
        weight, bias = layer.weight, layer.bias
        hidden_weight = weight.new_zeros(0, 0)
        hidden0 = cell0 = x.new_zeros(batch, controller.output_size)
    # The input's share of every step's pre-activations, in one product.
    input_gates = torch.addmm(
        bias, x.transpose(0, 1).flatten(0, 1), weight[:, :input_size].t()
    )  # (t b) i, i g -> (t b) g
    input_gates = input_gates.view(x.shape[1], batch, -1)
    hidden, reads, memory, weights, cell_final = FusedSequence.apply(
        LSTM if lstm else MLP,
        heads.read_heads,
        input_gates,
        weight[:, input_size:].contiguous(),
        hidden_weight.contiguous(),
        heads.projection.weight.contiguous(),
        heads.projection.bias.contiguous(),
        state.memory.transpose(1, 2).contiguous(),  # word-major: b n w -> b w n
        state.weights.contiguous(),
        state.reads.flatten(1).contiguous(),
        hidden0.contiguous(),
        cell0.contiguous(),
    )
    logits = cell.output(torch.cat([hidden, reads], dim=-1)).transpose(0, 1)  # b t o
    final_reads = reads[-1].view(batch, heads.read_heads, cell.memory_width)
    controller_state = (hidden[-1][None], cell_final[None]) if lstm else state.controller
    memory = memory.transpose(1, 2).contiguous()  # b w n -> b n w
    return logits, NTMState(memory, weights, final_reads, controller_state)
