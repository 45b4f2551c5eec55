#!/usr/bin/env bash
# The GPU checks of issue 4, each part one device call of under 10 minutes, results in $OUT (./gpu-results
# where $OUT is unset). The machine has PyTorch with CUDA and no network; fetch the other wheels here first
# (scripts/gpu_wheels.sh) and name .whl in the call's carry:
#
#   bash benchmarks/gpu_session.sh tests       # tests/test_cuda.py (GPU vs CPU update, Atari on the GPU) ~3 min
#   bash benchmarks/gpu_session.sh bench       # Atari workload, symrl vs SB3, both on the GPU, 3 rounds ~5 min
#   bash benchmarks/gpu_session.sh precision   # Breakout float32 vs bfloat16, 3 seeds each, side by side ~9 min
set -uo pipefail
part=${1:?usage: gpu_session.sh tests|bench|precision}
out=${OUT:-gpu-results}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  python3 -c "import torch, gymnasium, ale_py; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'gymnasium', gymnasium.__version__, 'ale-py', ale_py.__version__)"
} | tee "$out/machine.txt"

case $part in
tests)
  python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_atari_fast.py tests/test_losses.py 2>&1 | tee "$out/tests.txt" ;;
bench)
  python3 benchmarks/bench_vs_sb3.py --workloads ppo-atari sppo-atari ppo-atari-ale sppo-atari-ale ppo-atari-ale-bf16 \
    sppo-atari-ale-bf16 --rounds 3 --device cuda 2>&1 | tee "$out/bench_gpu.txt" ;;
precision)
  # six runs at once (16 cores, one GPU): 2 CPU threads each for torch and ALE's stepping threads
  steps=${STEPS:-750000}  # about 2,000 steps/s each expected; the timeout keeps the call under 10 minutes
  for seed in 0 1 2; do
    for precision in fp32 bf16; do
      timeout 560 python3 benchmarks/precision_atari.py --steps "$steps" --seeds $seed --precisions $precision \
        --device cuda --torch-threads 2 > "$out/precision-$seed-$precision.txt" 2>&1 &
    done
  done
  wait
  tail -n 1 "$out"/precision-*.txt ;;
*) echo "error: unknown part $part; use tests, bench or precision" >&2; exit 2 ;;
esac
