"""The pilot's rules (PREREGISTRATION.md), applied mechanically to the pilot's runs: per task, the clean baseline's
normalised score (is the budget right?), each candidate noise level's score as a fraction of clean (both measured
from a random policy's score), the chosen level, and the median seconds per run for the compute estimate.

    python studies/robustness/choose.py runs/studies/robustness/pilot_*        # prints a Markdown table

A candidate "cuts" when (noisy - random) <= 0.7 x (clean - random); the chosen level is the smallest that cuts, else
the largest (flagged). The budget is flagged when the clean baseline's normalised score is below 0.2 or above 0.95.
Random scores: the fixed anchors (symrl/anchors.yaml) where they exist, else RANDOM below (measured with
scripts/measure_random_scores.py), else 0.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

from symrl import anchors, results, stats

CUT = 0.7
BUDGET_RANGE = (0.2, 0.95)
BASELINES = ("PPO", "DPPO")  # the family baseline whose scores choose the level; A2C is reported beside it
# random-policy scores of tasks without fixed anchors: scripts/measure_random_scores.py ID --episodes 50 (minatar's
# default sticky actions and difficulty ramping), measured on 2026-12-02 before the MinAtar pilot ran
RANDOM: dict[str, float] = {"MinAtar/Breakout-v1": 0.54, "MinAtar/Asterix-v1": 0.48, "MinAtar/SpaceInvaders-v1": 4.12}


def level(noise: str) -> float:
    """The number in a noise label ('gaussian 0.3' -> 0.3, 'flip 0.1' -> 0.1); clean -> 0."""
    found = re.findall(r"[0-9.]+", str(noise))
    return float(found[-1]) if found else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    evaluations = results.load_evaluations(args.dirs)
    scores = stats.run_scores(evaluations)
    metrics = results.load_metrics(args.dirs)
    if not metrics.empty:
        scores["seconds"] = scores["run"].map(metrics.groupby("run")["time"].max())
    else:  # a copy made by collect.py: the seconds are in its metrics_summary.csv
        summaries = [pd.read_csv(Path(d) / "metrics_summary.csv").assign(run=lambda t, d=d: [str(Path(d) / r) for r in t["run"]])
                     for d in args.dirs if (Path(d) / "metrics_summary.csv").is_file()]
        seconds = pd.concat(summaries).set_index("run")["seconds"] if summaries else pd.Series(dtype=float)
        scores["seconds"] = scores["run"].map(lambda run: seconds.get(str(Path(run)), np.nan))
    print("| task | algorithm | budget | clean score (normalised) | budget | candidate: noisy/clean above random | "
          "chosen | median s/run |")
    print("|---|---|---|---|---|---|---|---|")
    for (env, algorithm), rows in scores.groupby(["env", "algorithm"], sort=True):
        anchor = anchors.anchor(str(env))
        random = anchor.random if anchor else RANDOM.get(str(env), 0.0)
        clean = rows[rows["noise"] == "clean"]["score"]
        if clean.empty:
            continue
        above = float(clean.mean()) - random
        normalised = anchor.normalize(float(clean.mean())) if anchor else float("nan")
        low, high = BUDGET_RANGE
        budget_ok = "ok" if not np.isfinite(normalised) or low <= normalised <= high else (
            "double" if normalised < low else "halve")
        fractions = {}
        for noise, noisy in rows[rows["noise"] != "clean"].groupby("noise"):
            fractions[str(noise)] = (float(noisy["score"].mean()) - random) / above if above > 0 else float("nan")
        ordered = sorted(fractions, key=level)
        cutting = [noise for noise in ordered if fractions[noise] <= CUT]
        chosen = cutting[0] if cutting else (f"{ordered[-1]} (none cuts)" if ordered else "–")
        candidates = ", ".join(f"{noise}: {fractions[noise]:.2f}" for noise in ordered)
        budget = int(rows["total_steps"].max()) if "total_steps" in rows else 0
        print(f"| {env} | {algorithm} | {budget:,} | {float(clean.mean()):.4g} ({normalised:.2f}) | {budget_ok} | "
              f"{candidates} | {chosen if algorithm in BASELINES else '(PPO decides)'} | {float(rows['seconds'].median()):.1f} |")


if __name__ == "__main__":
    main()
