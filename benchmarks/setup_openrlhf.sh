#!/usr/bin/env bash
# OpenRLHF's own environment for benchmarks/check_openrlhf.py: OpenRLHF 0.11.2 next to symrl, in .venv-openrlhf.
# OpenRLHF pins flash-attn (CUDA only, cannot be built without a GPU toolchain), vLLM-era ray and transformers, so it
# is installed without its dependencies, plus only what `openrlhf.models` (where PolicyLoss lives) imports: the
# pinned transformers, peft, DeepSpeed (built without its CUDA ops), and sympy and pylatexenc for openrlhf.utils.
# flash-attn is stubbed by the check itself. (pip then lists the OpenRLHF requirements left out: expected.)
# The CPU torch is installed first and pinned by a constraints file so that nothing can replace it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${OPENRLHF_VENV:-.venv-openrlhf}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip_install "torch==2.13.0+cpu" 2>/dev/null \
  || pip_install torch --index-url https://download.pytorch.org/whl/cpu
TORCH=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
echo "torch==$TORCH" > "$VENV/constraints.txt"
pip_install -c "$VENV/constraints.txt" --no-deps "openrlhf==0.11.2"
# DeepSpeed's setup.py imports torch: build it against the installed one, with no CUDA/C++ ops
DS_BUILD_OPS=0 DS_SKIP_CUDA_CHECK=1 pip_install -c "$VENV/constraints.txt" setuptools wheel \
  && DS_BUILD_OPS=0 DS_SKIP_CUDA_CHECK=1 pip_install -c "$VENV/constraints.txt" --no-build-isolation "deepspeed==0.19.6"
pip_install -c "$VENV/constraints.txt" "transformers==5.15.0" peft pylatexenc sympy -e .
"$VENV/bin/python" -c "import sys, torch; sys.exit(torch.__version__ != '$TORCH')" \
  || { echo "error: torch was replaced in $VENV (expected $TORCH)" >&2; exit 1; }
