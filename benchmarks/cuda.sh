#!/usr/bin/env bash
# The CUDA path on one GPU, in one go: its tests, training throughput (eager, compiled, CUDA
# graphs; float32 and bf16 autocast) and the wall time from the command to solved copy.
#
#     bash benchmarks/cuda.sh [output folder]      # default: cuda_report/ (a few minutes)
#
# Each part has a time limit, and each runs whatever happened to the one before, so a slow or
# failing part still leaves the others' figures (the script's exit status says nothing: read
# the outputs). PYTHON picks the interpreter (default: python).
set -u
out=${1:-cuda_report}
python=${PYTHON:-python}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
$python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)" \
    | tee -a "$out/gpu.txt"

echo "== tests"
timeout -k 5 150 $python -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    "tests/test_training.py::test_every_config_option_composes_and_instantiates[trainer=gpu]" \
    2>&1 | tee "$out/tests.txt"

echo "== throughput, eager"
timeout -k 5 90 $python benchmarks/throughput.py --device cuda --seconds 3 --modes eager \
    --controllers lstm mlp transformer lstm_baseline --batch-sizes 32 1024 \
    2>&1 | tee "$out/throughput_eager.md"
timeout -k 5 45 $python benchmarks/throughput.py --device cuda --seconds 3 --modes eager \
    --controllers lstm transformer --batch-sizes 1024 --precision bf16 \
    2>&1 | tee "$out/throughput_bf16.md"

echo "== time to solve copy: python train.py trainer=gpu, seed 0, cold caches"
timeout -k 5 160 $python benchmarks/time_to_solve.py --seeds 0 --no-warm --timeout 150 \
    --overrides trainer=gpu 2>&1 | tee "$out/time_to_solve.md"

echo "== throughput, compiled (each cell compiles from an empty cache)"
timeout -k 5 110 $python benchmarks/throughput.py --device cuda --seconds 3 \
    --modes compiled compiled-graphs --controllers lstm --batch-sizes 32 1024 \
    2>&1 | tee "$out/throughput_compiled.md"
