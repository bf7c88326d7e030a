"""Training throughput of the NTM: sequences per second for forward + backward + optimiser step.

Copy-shaped data (length 20: 41 steps of 9 input bits, 8 output bits), the paper's sizes
(128 x 20 memory, controller width 100, one read and one write head), per controller, batch size
and mode: eager, compiled (the per-step cell under torch.compile) or fused (the whole sequence
in one call forward and one backward, `ntm.fused`; LSTM and MLP controllers), or fused-own
(the same with the time loop's products written in `ntm/fused/sequence.cpp` at every batch
size, never PyTorch's BLAS; see `ntm.fused.BLAS_MIN_BATCH`). Prints a markdown table.
On a GPU (`--device cuda`): eager and compiled, and `compiled-graphs`, the compiled step with
CUDA graphs (torch.compile's mode "reduce-overhead"). `--precision bf16` runs under bf16
autocast, as `trainer=gpu` does (on the CPU too, where the fused sequence then steps aside).

    python benchmarks/throughput.py                       # the full table (a few minutes)
    python benchmarks/throughput.py --controllers lstm --batch-sizes 1 32 --modes fused
    python benchmarks/throughput.py --controllers lstm --batch-sizes 32 --modes compiled --profile
    python benchmarks/throughput.py --device cuda --batch-sizes 32 1024 --modes eager compiled
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ntm import NTM, LSTMBaseline, fused

LENGTH, WIDTH = 20, 8
BLAS_MIN_BATCH = fused.BLAS_MIN_BATCH


def copy_shaped_batch(batch_size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    steps = 2 * LENGTH + 1
    inputs = torch.randint(0, 2, (batch_size, steps, WIDTH + 1), device=device).float()
    targets = torch.randint(0, 2, (batch_size, steps, WIDTH), device=device).float()
    return inputs, targets


def build(controller: str, mode: str) -> torch.nn.Module:
    if controller == "lstm_baseline":
        return LSTMBaseline(input_size=WIDTH + 1, output_size=WIDTH)
    model = NTM(
        input_size=WIDTH + 1,
        output_size=WIDTH,
        controller=controller,
        controller_options={"hidden_size": 100},
        memory_slots=128,
        memory_width=20,
        compile=mode == "compiled",
        fused=mode.startswith("fused"),
    )
    if mode == "compiled-graphs":  # NTM(compile=True)'s step, with CUDA graphs
        assert hasattr(model, "_compiled_step"), "NTM no longer keeps its compiled step there"
        model._compiled_step = torch.compile(model.cell.forward, mode="reduce-overhead")
    return model


def measure(
    controller: str,
    batch_size: int,
    mode: str,
    seconds: float,
    profile: bool = False,
    device: str = "cpu",
    bf16: bool = False,
) -> float:
    # Compiled graphs are cached per code object (NTMCell.forward), shared by every model in
    # the process: start each measurement from an empty cache, as a training run does.
    torch._dynamo.reset()
    torch.manual_seed(0)
    # fused-own: the fused sequence with its own products at every batch size, never BLAS's
    fused.BLAS_MIN_BATCH = 2**62 if mode == "fused-own" else BLAS_MIN_BATCH
    model = build(controller, mode).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)  # as train.py
    inputs, targets = copy_shaped_batch(batch_size, device)

    def train_step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(inputs)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # the device's queue drained before reading the clock (a no-op on the CPU)
    synchronize = torch.cuda.synchronize if device == "cuda" else lambda: None
    for _ in range(3):  # warm-up: compilation, allocator, caches, CUDA graph capture
        train_step()
    synchronize()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        train_step()
        steps += 1
    synchronize()
    rate = steps * batch_size / (time.perf_counter() - start)
    if profile:
        with torch.profiler.profile() as profiler:
            for _ in range(5):
                train_step()
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--controllers", nargs="+", default=["lstm", "mlp", "transformer", "lstm_baseline"]
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["eager", "compiled", "compiled-graphs", "fused", "fused-own"],
        default=["eager", "compiled", "fused"],
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast (trainer=gpu)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per cell")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--profile", action="store_true", help="also print where 5 training steps spend time"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this PyTorch sees no CUDA GPU")

    torch.set_num_threads(args.threads)
    if args.profile:  # name the compiled kernels in the profile, not one opaque graph call
        torch._inductor.config.cpp.enable_kernel_profile = True
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{args.threads} thread(s)"
    print(
        f"torch {torch.__version__}, {where}, {args.precision}, copy length {LENGTH} "
        f"({2 * LENGTH + 1} steps), memory 128 x 20, controller width 100"
    )
    print("| controller | batch | mode | sequences/s |")
    print("|---|---:|---|---:|")
    for controller in args.controllers:
        for batch_size in args.batch_sizes:
            for mode in args.modes:
                if controller == "lstm_baseline" and mode != "eager":
                    continue  # nn.LSTM runs its whole sequence in one op already
                if mode.startswith("fused") and (
                    controller not in ("lstm", "mlp") or args.device != "cpu"
                ):
                    continue  # the fused sequence: these two controllers, on the CPU
                if mode == "compiled-graphs" and args.device != "cuda":
                    continue  # CUDA graphs need a GPU
                rate = measure(
                    controller,
                    batch_size,
                    mode,
                    args.seconds,
                    args.profile,
                    args.device,
                    args.precision == "bf16",
                )
                print(f"| {controller} | {batch_size} | {mode} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
