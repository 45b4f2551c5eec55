#!/usr/bin/env bash
# symrl with pandas 3 (issue: no pin forced by an archived package): a fresh environment (.venv-pandas3) with the
# newest pandas, `pip install -e .`, then `symrl report` on a committed study folder. Prints the pandas version and
# the report's verdict lines; exits non-zero if anything fails. A few minutes the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
SYMRL_VENV=.venv-pandas3 ./scripts/setup.sh dev  # symrl and ruff, no test extra
.venv-pandas3/bin/python -m pip install --disable-pip-version-check -q "pandas>=3"
.venv-pandas3/bin/python -c "import pandas; print('pandas', pandas.__version__); assert pandas.__version__ >= '3'"
OUT=$(mktemp -d)
.venv-pandas3/bin/symrl report studies/results/robustness/pilot_classic --out "$OUT/report"
test -s "$OUT/report/report.md"
echo "symrl report ran under pandas 3: $OUT/report/report.md"
