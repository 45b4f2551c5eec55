"""Keep a study's small per-run files in the repository: config.yaml, status.json, eval.csv and labels.json of every
finished run below SRC copied to DST (same relative paths; unfinished runs stay out until they finish), and one
metrics_summary.csv with a row per run (seconds trained, mean sign-change ratio, share of updates clipped by
max_grad_norm, mean probability of the taken actions, last step). Checkpoints, model.pt, TensorBoard files and the
per-update metrics.csv stay out.

    python studies/robustness/collect.py runs/studies/robustness/pilot_classic studies/results/robustness/pilot_classic
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

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
    if metrics.empty:
        return
    metrics["clipped"] = metrics["grad_norm"] > pd.to_numeric(metrics.get("max_grad_norm"), errors="coerce")
    summary = metrics.groupby("run").agg(
        seconds=("time", "max"), last_step=("step", "max"), sign_change_ratio=("sign_change_ratio", "mean"),
        clipped_share=("clipped", "mean"),
        **({"action_prob": ("action_prob", "mean")} if "action_prob" in metrics else {}))
    summary.index = [str(Path(run).relative_to(args.src)) for run in summary.index]
    runs.atomic_write_text(args.dst / "metrics_summary.csv", summary.rename_axis("run").to_csv(float_format="%.6g"))


if __name__ == "__main__":
    main()
