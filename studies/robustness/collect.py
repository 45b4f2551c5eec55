"""Keep a study's small per-run files in the repository: config.yaml, status.json, eval.csv and labels.json of every
finished run below SRC copied to DST (same relative paths; unfinished runs stay out until they finish), and one
metrics_summary.csv with a row per run (seconds trained, mean sign-change ratio, share of updates clipped by
max_grad_norm, mean probability of the taken actions, last step) and one metric_curves.csv with the mean sign-change
ratio per (env, noise, algorithm, step) and the number of runs behind it. Checkpoints, model.pt, TensorBoard files and
the per-update metrics.csv stay out; `symrl report` reads metrics_summary.csv (`symrl.results.summarize_metrics`) and
metric_curves.csv (`symrl.results.curve_of_metrics`) for the runs whose metrics.csv is not there, so the committed
files rebuild the report.

    python studies/robustness/collect.py runs/studies/robustness/pilot_classic studies/results/robustness/pilot_classic
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from symrl import results, runs

SMALL_FILES = (runs.CONFIG, runs.STATUS, runs.EVAL, runs.LABELS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    args = parser.parse_args()
    run_dirs = [run for run in results.find_runs([args.src]) if runs.read_status(run).get("state") == "finished"]
    for run_dir in run_dirs:
        target = args.dst / run_dir.relative_to(args.src)
        target.mkdir(parents=True, exist_ok=True)
        for name in SMALL_FILES:
            if (run_dir / name).is_file() and target.resolve() != run_dir.resolve():  # in place: nothing to copy
                shutil.copy2(run_dir / name, target / name)
    metrics = results.load_metrics(run_dirs)
    summary = results.summarize_metrics(metrics)
    if summary.empty:
        return
    summary.index = [Path(run).relative_to(args.src).as_posix() for run in summary.index]
    runs.atomic_write_text(args.dst / results.METRICS_SUMMARY, summary.rename_axis("run").to_csv(float_format="%.6g"))
    curve = results.curve_of_metrics(metrics)
    if not curve.empty:
        runs.atomic_write_text(args.dst / results.METRIC_CURVES, curve.to_csv(index=False, float_format="%.4g"))

if __name__ == "__main__":
    main()
