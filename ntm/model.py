"""The Neural Turing Machine: `NTMCell` runs one step, `NTM` a whole batch-first sequence.

Axes: b batch, t time, h heads, n memory slots, w word width, d controller output width.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from ntm import controllers, fused
from ntm.addressing import address
from ntm.heads import Heads
from ntm.memory import MemoryInit, read, write


class NTMState(NamedTuple):
    """Everything that carries from one step to the next; nothing is stored on the modules."""

    memory: Tensor  # (b, n, w)
    weights: Tensor  # (b, h_read + h_write, n), the heads' last weightings, read heads first
    reads: Tensor  # (b, h_read, w), the last read vectors
    controller: Any  # the controller's own state

    @property
    def read_weights(self) -> Tensor:  # (b, h_read, n)
        return self.weights[:, : self.reads.shape[1]]

    @property
    def write_weights(self) -> Tensor:  # (b, h_write, n)
        return self.weights[:, self.reads.shape[1] :]


class Trace(NamedTuple):
    """Per-step weightings of a sequence, for figures."""

    read_weights: Tensor  # (b, t, h_read, n)
    write_weights: Tensor  # (b, t, h_write, n)


class NTMCell(nn.Module):
    """One NTM step: ``output, next_state = cell(x, state)`` with x (b, input_size).

    controller: a registered name (with `controller_options`), a `Controller` module, or a
    factory called as ``controller(input_size=..., **controller_options)``; its input width
    (task input + all read vectors) is computed here.

    Order within a step: the controller sees the input and the previous reads; all heads address
    the previous memory in one batched call; the read heads read it, then the write heads erase
    and add; the output layer sees the controller output and the new reads. Addressing and
    memory run in float32 (or wider) even under bf16 autocast, where only the controller and the
    linear layers drop to bf16.
    """

    def __init__(
        self,
        *,
        input_size: int,
        output_size: int,
        controller: str | controllers.Controller | Callable[..., controllers.Controller] = "lstm",
        controller_options: Mapping[str, Any] | None = None,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
        memory_init: str = "constant",
        memory_init_value: float = 1e-6,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_size", input_size),
            ("output_size", output_size),
            ("memory_width", memory_width),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.input_size = input_size
        self.output_size = output_size
        self.memory_width = memory_width
        controller_input = input_size + read_heads * memory_width
        options = dict(controller_options or {})
        if isinstance(controller, str):
            controller = controllers.create(controller, input_size=controller_input, **options)
        elif not isinstance(controller, nn.Module):  # a factory, e.g. a class or a partial
            controller = controller(input_size=controller_input, **options)
        self.controller = controller
        self.heads = Heads(
            input_size=controller.output_size,
            memory_width=memory_width,
            read_heads=read_heads,
            write_heads=write_heads,
            shift_range=shift_range,
        )
        self.memory_init = MemoryInit(width=memory_width, init=memory_init, value=memory_init_value)
        self.output = nn.Linear(controller.output_size + read_heads * memory_width, output_size)

    def initial_state(
        self,
        batch_size: int,
        *,
        memory_slots: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> NTMState:
        """The state before the first step, for a memory of any number of slots.

        The read and write weightings start focused on slot 0: with all-zero weightings the first
        writes go nowhere and copy barely trains (measured: ~14 wrong bits per sequence after
        380K sequences, against solved in ~30K when focused).
        """
        if memory_slots < 1:
            raise ValueError(f"memory_slots must be >= 1, got {memory_slots}")
        reference = self.output.weight
        device = reference.device if device is None else device
        dtype = reference.dtype if dtype is None else dtype
        # Memory and weightings in float32 or wider, like the heads' outputs (`Heads.forward`),
        # even for a model cast to bf16: addressing and writes are not safe in half precision.
        state_dtype = torch.promote_types(dtype, torch.float32)
        memory = self.memory_init(batch_size, memory_slots, device=device, dtype=state_dtype)
        heads = self.heads.read_heads + self.heads.write_heads
        weights = torch.zeros(batch_size, heads, memory_slots, device=device, dtype=state_dtype)
        weights[..., 0] = 1  # (not F.one_hot: it checks its input on the host)
        return NTMState(
            memory=memory,
            weights=weights,
            reads=read(memory, weights[:, : self.heads.read_heads]),
            controller=self.controller.initial_state(batch_size, device=device, dtype=dtype),
        )

    def forward(self, x: Tensor, state: NTMState) -> tuple[Tensor, NTMState]:
        """x (b, input_size), state -> output logits (b, output_size), next state."""
        # Reads are float32 (the memory's dtype); a model cast to bf16 takes them in its own.
        parameter_dtype = self.output.weight.dtype
        previous_reads = rearrange(state.reads, "b h w -> b (h w)").to(parameter_dtype)
        controller_input = torch.cat([x, previous_reads], dim=-1)
        controller_output, controller_state = self.controller(controller_input, state.controller)
        params = self.heads(controller_output)
        with torch.autocast(x.device.type, enabled=False):
            weights = address(state.memory, state.weights, **params.addressing._asdict())
            read_weights, write_weights = weights.split(
                [self.heads.read_heads, self.heads.write_heads], dim=1
            )
            reads = read(state.memory, read_weights)
            memory = write(state.memory, write_weights, params.erase, params.add)
        reads_flat = rearrange(reads, "b h w -> b (h w)").to(parameter_dtype)
        output = self.output(torch.cat([controller_output, reads_flat], dim=-1))
        return output, NTMState(memory, weights, reads, controller_state)


class NTM(nn.Module):
    """A Neural Turing Machine over whole sequences, batch-first like ``nn.LSTM(batch_first=True)``.

    ``logits, state = ntm(x)`` with x (b, t, input_size) -> logits (b, t, output_size) (no
    sigmoid) and the final state; pass the state back in to carry on. No parameter's shape
    depends on `memory_slots`: it only sets the default size of `initial_state`, so a model
    trained with 128 slots runs with 256. ``compile=True`` compiles the per-step cell with
    `torch.compile` for training (the time loop stays in Python: one small graph, compiled once);
    calls without gradients (evaluation) run eagerly, so new lengths, batch sizes and memory
    sizes there cost no recompilation. ``fused=True`` runs a whole sequence as one forward and
    one backward call (`ntm.fused`: the time loop in C++, built on first use), with or without
    gradients, where the model allows it (an LSTM or MLP controller of one layer, one write
    head, CPU, float32 or float64, no autocast, no trace), and the (compiled) step otherwise;
    the same function, several times the throughput.
    """

    def __init__(
        self,
        *,
        memory_slots: int = 128,
        compile: bool = False,
        fused: bool = False,
        **cell_options: Any,
    ):
        """memory_slots: the default memory size of `initial_state`; compile, fused: see the
        class docstring; cell_options: `NTMCell`'s keyword arguments (input_size, output_size,
        controller, memory_width, heads, ...), with its defaults."""
        super().__init__()
        if memory_slots < 1:
            raise ValueError(f"memory_slots must be >= 1, got {memory_slots}")
        self.memory_slots = memory_slots
        self.fused = fused
        self.cell = NTMCell(**cell_options)
        self.compile_step = compile  # (not `self.compile`: that is nn.Module.compile)
        self._compiled_step = self._compile_step() if compile else None

    def _compile_step(self) -> Callable[..., tuple[Tensor, NTMState]]:
        # A compiled function, not a compiled module: a module attribute would be registered as
        # a submodule and repeat every parameter in the state dict.
        return torch.compile(self.cell.forward)

    def __getstate__(self) -> dict[str, Any]:
        # The compiled step is bound to this model's cell: a copy (`copy.deepcopy`, pickling)
        # that kept it would train the original's parameters. The copy compiles its own.
        state = super().__getstate__()
        state["_compiled_step"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.compile_step = state.get("compile_step", False)  # (absent in older pickles)
        self._compiled_step = self._compile_step() if self.compile_step else None

    @property
    def controller(self) -> controllers.Controller:
        return self.cell.controller

    def initial_state(
        self,
        batch_size: int,
        *,
        memory_slots: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> NTMState:
        """The starting state; `memory_slots` overrides the size given at construction."""
        return self.cell.initial_state(
            batch_size,
            memory_slots=self.memory_slots if memory_slots is None else memory_slots,
            device=device,
            dtype=dtype,
        )

    def forward(
        self, x: Tensor, state: NTMState | None = None, *, return_trace: bool = False
    ) -> tuple[Tensor, NTMState] | tuple[Tensor, NTMState, Trace]:
        """x (b, t, input_size) -> logits (b, t, output_size), final state[, trace]."""
        if x.dim() != 3 or x.shape[-1] != self.cell.input_size:
            raise ValueError(
                f"expected input of shape (batch, time, {self.cell.input_size}), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[1] == 0:
            raise ValueError("expected a sequence of at least one time step, got 0")
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device)
        if (
            self.fused
            and not return_trace
            and fused.unsupported(self.cell, x) is None
            and fused.available()
        ):
            return fused.run(self.cell, x, state)
        compiled = self._compiled_step is not None and torch.is_grad_enabled()
        outputs, read_trace, write_trace = [], [], []
        # Time-major and contiguous: every step's input has the same strides whatever the
        # sequence length, so the compiled step is not recompiled for each new length.
        for index, step in enumerate(x.transpose(0, 1).contiguous().unbind(0)):
            # The first step runs eagerly: its state does not require grad yet, and compiling
            # it would mean a second graph (one more cold compile) for one step in 2t + 1.
            step_fn = self._compiled_step if compiled and index > 0 else self.cell
            output, state = step_fn(step, state)
            outputs.append(output)
            if return_trace:
                read_trace.append(state.read_weights)
                write_trace.append(state.write_weights)
        logits = torch.stack(outputs, dim=1)
        if return_trace:
            return logits, state, Trace(torch.stack(read_trace, 1), torch.stack(write_trace, 1))
        return logits, state
