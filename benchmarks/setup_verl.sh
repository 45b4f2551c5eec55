#!/usr/bin/env bash
# veRL's own environment for benchmarks/check_verl.py: veRL 0.9.1 next to symrl, in .venv-verl. veRL pins
# tensordict<=0.10 and transformers<5.11, so it cannot share the main environment (TorchRL 0.14, transformers 5.23).
# The CPU torch is installed first and pinned by a constraints file, so that nothing veRL pulls in can replace it
# with the multi-GB CUDA build. symrl is installed editable without extras: its pyproject.toml entry point in the
# `verl.plugins` group is what makes `import verl` register the `symmetric_ppo` policy loss. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VERL_VENV:-.venv-verl}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip_install "torch==2.13.0+cpu" 2>/dev/null \
  || pip_install torch --index-url https://download.pytorch.org/whl/cpu
TORCH=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
echo "torch==$TORCH" > "$VENV/constraints.txt"
pip_install -c "$VENV/constraints.txt" "verl==0.9.1" -e .
# pip resolves a dependency only against the constraints, so check that torch is still the one installed first
"$VENV/bin/python" -c "import sys, torch; sys.exit(torch.__version__ != '$TORCH')" \
  || { echo "error: torch was replaced in $VENV (expected $TORCH)" >&2; exit 1; }
