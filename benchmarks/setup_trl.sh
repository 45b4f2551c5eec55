#!/usr/bin/env bash
# The RLHF benchmark's own environment: TRL 1.12 (the last TRL with a PPO trainer, under trl.experimental.ppo)
# next to symrl, in .venv-trl, so that TRL never becomes a dependency of symrl. Same torch and transformers
# as the main environment. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TRL_VENV:-.venv-trl}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip_install "torch==2.13.0+cpu" 2>/dev/null \
  || pip_install torch --index-url https://download.pytorch.org/whl/cpu
pip_install "trl==1.12.0" "transformers==5.23.0" "peft==0.21.2" -e ".[rlhf]"
