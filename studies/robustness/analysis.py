"""The pre-registered analysis of the robustness study (PREREGISTRATION.md), from the runs' files: the primary
comparisons with Holm's adjustment over exactly those, their verdicts, and the negative controls' pipeline check.
`symrl report` gives every other number (per task, secondary comparisons, diagnostics, figures).

    python studies/robustness/analysis.py studies/results/robustness/runs      # prints Markdown tables

Without options it computes exactly the robustness study's pre-registered analysis. The options let another
pre-registered study name its own comparisons (studies/rlvr_arithmetic.md):

    python studies/robustness/analysis.py studies/results/rlvr_arithmetic/runs --noise "verifier 0.2" \
        --margin 0.05 --primary "SGRPO unmasked:scaled GRPO" --negative "SGRPO:scaled GRPO"
"""

from __future__ import annotations

import argparse

import numpy as np

from symrl import results, stats

MARGIN = 0.1
NOISE = "noisy"
PRIMARY = [("SPPO unmasked", "scaled PPO"), ("SA2C", "scaled A2C"), ("DSPPO unmasked", "scaled DPPO")]
NEGATIVE_CONTROLS = [("SPPO", "scaled PPO"), ("DSPPO", "scaled DPPO")]
# Pre-registered before the MinAtar games had fixed anchors (symrl/anchors.yaml): min-max over the study's runs.
MIN_MAX = ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "MinAtar/SpaceInvaders-v1"]


def pooled(table, variant: str, control: str, noise: str):
    rows = table[(table["scope"] == "pooled") & (table["variant"] == variant) & (table["control"] == control)
                 & (table["noise"] == noise)]
    if rows.empty:  # a family with one task: its task rows are the family's
        rows = table[(table["variant"] == variant) & (table["control"] == control) & (table["noise"] == noise)]
    return rows.set_index("comparison")


def _pair(text: str) -> tuple[str, str]:
    variant, sep, control = text.partition(":")
    if not sep or not variant or not control:
        raise argparse.ArgumentTypeError(f"{text!r}: give VARIANT:CONTROL, e.g. 'SGRPO unmasked:scaled GRPO'")
    return variant, control


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--noise", default=NOISE, help="the noisy setting's label (the study's sweep files: noisy)")
    parser.add_argument("--margin", type=float, default=MARGIN, help="the decision rule's margin (normalised scale)")
    parser.add_argument("--primary", type=_pair, nargs="+", default=PRIMARY, help="VARIANT:CONTROL pairs, Holm over them")
    parser.add_argument("--negative", type=_pair, nargs="+", default=NEGATIVE_CONTROLS,
                        help="VARIANT:CONTROL pairs with the same gradient (the pipeline check)")
    parser.add_argument("--min-max", nargs="*", default=None, metavar="ENV",
                        help="envs normalised by min-max over the runs although they have fixed anchors "
                        "(default: the robustness study's MinAtar games that the runs have)")
    args = parser.parse_args()
    margin = args.margin
    evaluations = results.load_evaluations(args.dirs)
    min_max = [env for env in MIN_MAX if env in set(evaluations["env"])] if args.min_max is None else args.min_max
    scores, _ = stats.normalize_scores(stats.run_scores(evaluations), value="score", min_max=min_max)
    table, skipped = stats.robustness_comparisons(scores, margin=margin)
    primary = []
    for variant, control in args.primary:
        rows = pooled(table, variant, control, args.noise)
        for comparison in stats.COMPARISONS:
            if comparison in rows.index:
                primary.append((variant, control, comparison, rows.loc[comparison]))
    adjusted = stats.holm([row["p"] for *_, row in primary])
    print("## Primary comparisons (pooled over each family's tasks; Holm over these)\n")
    print("| variant | control | comparison | tasks | X − C [95% CI] | p | p (Holm) | MDD | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (variant, control, comparison, row), p_holm in zip(primary, adjusted, strict=True):
        result = stats.Contrast(row["estimate"], row["low"], row["high"], np.nan, np.nan, row["p"], row["mdd"], int(row["n"]))
        print(f"| {variant} | {control} | {comparison} | {int(row['tasks'])} | {row['estimate']:.3g} "
              f"[{row['low']:.3g}, {row['high']:.3g}] | {row['p']:.3g} | {p_holm:.3g} | {row['mdd']:.3g} | "
              f"**{stats.verdict(result, margin, p=p_holm)}** |")
    print("\n## Negative controls (same gradient: must not differ by more than the margin)\n")
    failed, checked = False, 0
    for variant, control in args.negative:
        rows = pooled(table, variant, control, args.noise)
        checked += len(rows)
        for comparison, row in rows.iterrows():
            outside = row["low"] > margin or row["high"] < -margin
            failed |= bool(outside)
            print(f"- {variant} vs {control}, {comparison}: {row['estimate']:.3g} [{row['low']:.3g}, {row['high']:.3g}] "
                  f"-> {'PIPELINE FAILURE' if outside else 'passes'}")
    outcome = ("FAILED: report the failure and its cause, no verdicts" if failed else "passed" if checked else
               "not checked: no negative-control pair has runs both clean and noisy")
    print(f"\nPipeline check: {outcome}")
    for line in skipped:
        print(f"- not compared: {line}")


if __name__ == "__main__":
    main()
