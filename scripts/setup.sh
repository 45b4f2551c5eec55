#!/usr/bin/env bash
# Create .venv and install symrl with everything it needs (idempotent: a second run installs nothing).
# torch: kept if already importable; otherwise the CUDA build where an NVIDIA GPU is present and the CPU
# build elsewhere, so that machines without a GPU never download the CUDA packages.
# Override with SYMRL_TORCH="torch==X.Y.Z" (any pip requirement) to bring your own build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${SYMRL_VENV:-.venv}
EXTRAS=${1:-test}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "${SYMRL_TORCH:-}" ]; then
    pip_install "$SYMRL_TORCH"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    pip_install "torch>=2.1"
  else
    # the CPU wheel: from a local wheel folder / mirror when one is configured, else PyTorch's CPU index
    pip_install "torch==2.13.0+cpu" 2>/dev/null || pip_install torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi
pip_install -e ".[${EXTRAS}]"
