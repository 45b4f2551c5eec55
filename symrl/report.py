"""A study's report: run directories -> ``report.md`` and a self-contained ``report.html`` with figures.

The report states what the comparison of robust-RL algorithms rests on, each number with its uncertainty:
per-environment final returns with t-intervals over seeds, aggregates across environments (rliable's methods),
learning curves, the advantage sign-change ratio, and SPPO next to the scaled-PPO control that isolates
the rescaling SPPO's loss amounts to. The HTML page is rendered from the Markdown by a small renderer
here, so both always hold the same numbers, and it embeds its figures, so it can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Collection, Iterable, Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: figures render with Agg, whatever backend the caller uses

from . import results, runs, stats
from .errors import SymrlError

AGGREGATE_REPS = 2000
MIN_AGGREGATE_ENVS = 5
FIGURES = "figures"
SUMMARY_COLUMNS = [*stats.GROUP_COLUMNS, "mean", "low", "high", "n", "unfinished"]
UNFINISHED_MARK = "†"
PathLike = str | Path


# --------------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------------
def format_number(value: Optional[float]) -> str:
    """4 significant digits (``0.1235``, ``123.5``), whole numbers from 10,000 up (``12346``, not ``1.235e+04``)."""
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return "0" if text in ("-0", "-0.0") else text


def format_interval(estimate: float, low: float, high: float) -> str:
    """``estimate [low, high]``."""
    return f"{format_number(estimate)} [{format_number(low)}, {format_number(high)}]"


def format_ci(mean: float, low: float, high: float, n: int) -> str:
    """A table cell of the report: ``mean [low, high] (n seeds)``."""
    return f"{format_interval(mean, low, high)} ({int(n)} seed{'' if int(n) == 1 else 's'})"


def _md(text: object) -> str:
    """Plain text for a Markdown cell or line: the characters the renderer gives a meaning are escaped."""
    return re.sub(r"([\\|*`])", r"\\\1", str(text))


def _as_paths(paths: PathLike | Iterable[PathLike]) -> list[PathLike]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


# --------------------------------------------------------------------------------------------------
# the per-environment table (also printed by the CLI)
# --------------------------------------------------------------------------------------------------
def summary_table(
    source: PathLike | Iterable[PathLike] | pd.DataFrame, confidence: float = stats.CONFIDENCE,
    fraction: float = stats.SCORE_FRACTION,
) -> pd.DataFrame:
    """Score per (env, noise, algorithm): mean over seeds with its t-interval (:func:`symrl.stats.mean_ci`).

    ``source`` is run directories / folders holding runs, or :func:`symrl.results.load_evaluations`' table.
    A run's score is its mean evaluation return over the last ``fraction`` of its training
    (:func:`symrl.stats.run_scores`; a run that stopped earlier counts with its last evaluation). Columns ``env,
    noise, algorithm, mean, low, high, n`` (seeds) and ``unfinished`` (how many of them are not finished).
    The report's tables are built from this function, so what the CLI prints and the report agree.
    """
    evaluations = source if isinstance(source, pd.DataFrame) else results.load_evaluations(_as_paths(source))
    return _summary_of(stats.run_scores(evaluations, fraction), confidence)


def _summary_of(scores: pd.DataFrame, confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """:func:`summary_table` of :func:`symrl.stats.run_scores`' table."""
    rows = []
    for (env, noise, algorithm), group in scores.groupby(stats.GROUP_COLUMNS, sort=True):
        mean, low, high = stats.mean_ci(group["score"], confidence=confidence)
        rows.append({"env": env, "noise": noise, "algorithm": algorithm, "mean": mean, "low": low, "high": high,
                     "n": int(group["score"].notna().sum()), "unfinished": int((group["state"] != "finished").sum())})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# --------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------
def write_report(
    paths: PathLike | Iterable[PathLike], out_dir: PathLike, baseline: Optional[str] = None, seed: int = 0,
    reps: int = AGGREGATE_REPS, fraction: float = stats.SCORE_FRACTION, margin: float = stats.MARGIN,
    min_max: Collection[str] = (),
) -> Path:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``out_dir``; return the Markdown's path.

    ``paths`` are run directories or folders that hold them (a sweep's output). A run's score is its mean
    evaluation return over the last ``fraction`` of training (:func:`symrl.stats.run_scores`). ``margin`` is the
    normalised effect below which a variant-vs-control comparison has "no useful effect"
    (:func:`symrl.stats.verdict`). ``baseline`` is the algorithm label the probability of improvement compares
    with (default: "PPO" if present, else the first label alphabetically). ``seed`` seeds the stratified bootstraps;
    ``reps`` is the number of its resamples. ``min_max`` names envs normalised by min-max over the runs although
    they have fixed anchors (:func:`symrl.stats.normalize_scores`). A path without runs raises :class:`SymrlError`.
    """
    paths = _as_paths(paths)
    run_dirs = results.find_runs(paths)
    evaluations = results.load_evaluations(run_dirs)
    metrics = results.load_metrics(run_dirs)
    diagnostics = results.load_metric_summaries(run_dirs, metrics)  # per run; metrics_summary.csv where no metrics.csv
    scores, normalizations = stats.normalize_scores(stats.run_scores(evaluations, fraction), value="score", min_max=min_max)
    algorithms = sorted(scores["algorithm"].unique()) if not scores.empty else []
    baseline = _choose_baseline(algorithms, baseline)
    colors = {algorithm: f"C{index % 10}" for index, algorithm in enumerate(algorithms)}

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SymrlError(f"{out} is a file; --out takes the folder the report is written into (e.g. {out.parent / 'report'})")
    (out / FIGURES).mkdir(parents=True, exist_ok=True)
    summary = _summary_of(scores)  # the run scores computed above, not again from the evaluations
    lines = _header(run_dirs, evaluations, results.runs_without_config(paths))
    warnings = stats.pooling_warnings(evaluations)
    if warnings:
        lines += ["## Warnings", ""] + [f"- {_md(warning)}" for warning in warnings] + [""]
    lines += _final_section(summary, fraction)
    lines += _robustness_section(scores, normalizations, margin)
    lines += _control_section(scores, evaluations, out, colors)
    lines += _aggregate_section(scores, normalizations, baseline, seed, reps, out, colors)
    lines += _learning_curve_section(evaluations, out, colors)
    run_table = results.load_runs(run_dirs)
    lines += _sign_change_section(diagnostics, results.load_metric_curves(run_dirs, metrics, run_table=run_table),
                                  run_table, out, colors)
    lines += _language_model_section(evaluations, out, colors)
    markdown = "\n".join(lines).rstrip() + "\n"

    markdown_path = out / "report.md"
    runs.atomic_write_text(markdown_path, markdown)
    runs.atomic_write_text(out / "report.html", markdown_to_html(markdown, out, title="symrl report"))
    return markdown_path


def _range(low: int, high: int) -> str:
    return str(low) if low == high else f"{low} to {high}"


def _choose_baseline(algorithms: list[str], baseline: Optional[str]) -> Optional[str]:
    if baseline is not None:
        baseline = next((a for a in algorithms if a.lower() == baseline.lower()), baseline)  # labels match in any case
        if algorithms and baseline not in algorithms:
            raise SymrlError(f"baseline {baseline!r} is not an algorithm of these runs; choose one of: {', '.join(algorithms)}")
        return baseline
    if not algorithms:
        return None
    return "PPO" if "PPO" in algorithms else algorithms[0]


def _run_table(run_dirs: list[Path], evaluations: pd.DataFrame) -> pd.DataFrame:
    """One row per run, including runs without any evaluation yet."""
    last_step = evaluations.groupby("run")["step"].max() if not evaluations.empty else pd.Series(dtype=float)
    table = results.load_runs(run_dirs)
    table["last_step"] = table["run"].map(last_step).astype(float)
    return table


def _header(run_dirs: list[Path], evaluations: pd.DataFrame, not_started: list[tuple[Path, dict]]) -> list[str]:
    table = _run_table(run_dirs, evaluations)
    envs, algorithms = sorted(table["env"].unique()), sorted(table["algorithm"].unique())
    noises, seeds = sorted(table["noise"].unique()), sorted(table["seed"].unique())
    per_setting = table.groupby(stats.GROUP_COLUMNS).size()
    lines = [
        "# symrl report", "",
        f"{_count(len(table), 'run')}: {_count(len(envs), 'environment')}, {_count(len(algorithms), 'algorithm')}, "
        f"{_count(len(noises), 'noise setting')}, {_count(len(seeds), 'seed')} ({', '.join(str(s) for s in seeds)}); "
        f"{_range(per_setting.min(), per_setting.max())} run{'' if per_setting.max() == 1 else 's'} per "
        "(environment, noise, algorithm).", "",
        f"- Algorithms: {', '.join(_md(a) for a in algorithms)}",
        f"- Environments: {', '.join(_md(e) for e in envs)}",
        f"- Noise settings: {', '.join(_md(n) for n in noises)}", "",
        "| environment | budget (total_steps, or iterations x batch for language models) | runs | last evaluated step |",
        "|---|---|---|---|",
    ]
    for env, rows in table.groupby("env", sort=True):
        budgets = [f"{int(b):,}" for b in sorted(set(rows["total_steps"].dropna()))]
        if "iterations" in rows:
            pairs = rows[["iterations", "batch_size"]].dropna().drop_duplicates()
            budgets += [f"{int(i)} x {int(b)}" for i, b in sorted(pairs.itertuples(index=False))]
        lines.append(f"| {_md(env)} | {', '.join(budgets) or '–'} | {len(rows)} | "
                     f"{format_number(rows['last_step'].max())} |")
    lines.append("")
    if not_started:
        lines += [f"{_count(len(not_started), 'run')} stopped before training (no config.yaml) and left out:", ""]
        lines += [f"- `{_md(path)}`: {_md(status.get('state', 'unknown'))}"
                  + (f" ({_md(status['error'])})" if status.get("error") else "") for path, status in not_started]
        lines.append("")
    evaluated = np.isfinite(table["last_step"].astype(float))
    flagged = table[(table["state"] != "finished") | ~evaluated]
    if flagged.empty:
        return lines + ["All runs that started finished." if not_started else "All runs finished.", ""]
    lines += [f"Runs not finished are included with their last evaluation and marked {UNFINISHED_MARK} in the tables; "
              "runs without any evaluation are left out:", ""]
    for row in flagged.itertuples():
        reached = f"last evaluation at step {format_number(row.last_step)}" if np.isfinite(row.last_step) else "no evaluation"
        lines.append(f"- `{_md(row.run)}`: {_md(row.state)}, {reached}")
    return lines + [""]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _final_section(summary: pd.DataFrame, fraction: float) -> list[str]:
    lines = ["## Score per environment", ""]
    if summary.empty:
        return lines + ["No run has an evaluation yet.", ""]
    lines += [
        f"A run's score is its mean clean evaluation return over the last {fraction:.0%} of its training (a run that "
        "stopped earlier, e.g. diverged, counts with its last evaluation); the table gives the mean over seeds with a "
        "95% t-interval over seeds (none for one seed). Bold: the highest mean, only where its CI is separated from "
        "every other algorithm's CI in that setting.", "",
    ]
    for env, env_rows in summary.groupby("env", sort=True):
        algorithms = sorted(env_rows["algorithm"].unique())
        lines += [f"### {_md(env)}", "", "| noise | " + " | ".join(_md(a) for a in algorithms) + " |",
                  "|---" * (len(algorithms) + 1) + "|"]
        for noise, rows in env_rows.groupby("noise", sort=True):
            by_algorithm = {row.algorithm: row for row in rows.itertuples()}
            best = _separated_best(rows)
            cells = []
            for algorithm in algorithms:
                row = by_algorithm.get(algorithm)
                if row is None:
                    cells.append("–")
                    continue
                cell = format_ci(row.mean, row.low, row.high, row.n)
                cell = f"**{cell}**" if algorithm == best else cell
                cells.append(cell + (f" {UNFINISHED_MARK}" if row.unfinished else ""))
            lines.append(f"| {_md(noise)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _separated_best(rows: pd.DataFrame) -> Optional[str]:
    """The algorithm with the highest mean if its CI is separated from every other one's, else None."""
    rows = rows[np.isfinite(rows["mean"])]
    if len(rows) < 2:
        return None
    best = rows.loc[rows["mean"].idxmax()]
    others = rows.drop(index=best.name)
    if all(stats.separated((best["low"], best["high"]), (other.low, other.high)) for other in others.itertuples()):
        return str(best["algorithm"])
    return None


def _aggregate_section(
    scores: pd.DataFrame, normalizations: dict, baseline: Optional[str], seed: int, reps: int, out: Path,
    colors: dict[str, str],
) -> list[str]:
    lines = ["## Aggregate across environments", ""]
    if scores.empty:
        return lines + ["No run has an evaluation yet.", ""]
    envs = scores["env"].nunique()
    if envs < MIN_AGGREGATE_ENVS:  # over a few tasks the stratified bootstrap's intervals are too narrow to mean much
        return lines + [f"Left out: {_count(envs, 'environment')}. The IQM and the probability of improvement pool "
                        f"environments, and with fewer than {MIN_AGGREGATE_ENVS} their bootstrap intervals over a few "
                        "tasks and seeds are too narrow to trust; the per-environment tables and the pooled comparisons "
                        "above (t-intervals) stand instead.", ""]
    try:
        aggregates = stats.aggregate_metrics(scores, reps=reps, seed=seed)
        improvement = stats.probability_of_improvement(scores, baseline, reps=reps, seed=seed) if baseline else None
    except SymrlError as exc:
        return lines + [f"Skipped: {_md(exc)}", ""]
    lines += [
        "Run scores are normalised per environment, then aggregated over all runs and environments of a noise "
        "setting: the interquartile mean (IQM, the mean of the middle 50% of runs, robust to outlier runs) and the "
        "optimality gap (how far scores fall short of 1; lower is better), with 95% stratified-bootstrap CIs from "
        f"rliable's method ({reps:,} resamples, seed {seed}). Where an algorithm has different numbers of seeds on different "
        "environments, each environment contributes its smallest number of runs (lowest seeds).", "",
        "Normalisation:", "",
    ]
    lines += [f"- {_md(normalizations[env].describe(env))}" for env in sorted(normalizations)]
    notes = [note for noise, scope in stats.aggregate_scopes(scores).items() if (note := scope.describe(noise))]
    unfinished = int((scores["state"] != "finished").sum())
    if unfinished:
        notes.append(f"{_count(unfinished, 'run')} not finished {'is' if unfinished == 1 else 'are'} included with "
                     f"{'its' if unfinished == 1 else 'their'} last evaluation (marked {UNFINISHED_MARK} above).")
    if notes:
        lines += ["", "Scope:", ""] + [f"- {_md(note)}" for note in notes]
    lines += ["", "| noise | algorithm | IQM | optimality gap | runs per env × envs |", "|---|---|---|---|---|"]
    for (noise, algorithm), rows in aggregates.groupby(["noise", "algorithm"], sort=True):
        by_metric = rows.set_index("metric")
        iqm, gap = by_metric.loc["IQM"], by_metric.loc["optimality gap"]
        lines.append(f"| {_md(noise)} | {_md(algorithm)} | {format_interval(iqm.estimate, iqm.low, iqm.high)} | "
                     f"{format_interval(gap.estimate, gap.low, gap.high)} | {int(iqm.runs)} × {int(iqm.tasks)} |")
    lines.append("")
    if not aggregates.empty:
        lines += [f"![IQM and optimality gap]({FIGURES}/aggregate.png)", ""]
        _plot_aggregates(aggregates, out / FIGURES / "aggregate.png", colors)
    if improvement is not None:
        lines += [f"### Probability of improvement over {_md(baseline)}", "",
                  f"P(X > {_md(baseline)}): the probability that a run of X scores higher than a run of {_md(baseline)} on an "
                  "environment picked at random (0.5: no difference), with a 95% stratified-bootstrap CI.", ""]
        if improvement.empty:
            lines += [f"No noise setting has both {_md(baseline)} and another algorithm on the same environments.", ""]
        else:
            lines += [f"| noise | algorithm X | P(X > {_md(baseline)}) |", "|---|---|---|"]
            lines += [f"| {_md(row.noise)} | {_md(row.algorithm)} | {format_interval(row.estimate, row.low, row.high)} |"
                      for row in improvement.itertuples()]
            lines.append("")
    return lines


def _learning_curve_section(evaluations: pd.DataFrame, out: Path, colors: dict[str, str]) -> list[str]:
    lines = ["## Learning curves", ""]
    curves = stats.learning_curve(evaluations)
    if curves.empty:
        return lines + ["No run has an evaluation yet.", ""]
    lines += ["Evaluation return over training: mean over seeds, band = 95% t-interval. A step's statistics use the runs "
              "that reached it, so the end of a curve may rest on fewer seeds.", ""]
    for index, (env, rows) in enumerate(curves.groupby("env", sort=True)):
        name = f"curves_{index}_{_slug(env)}.png"
        _plot_panels(rows, out / FIGURES / name, colors, title=str(env), ylabel="evaluation return")
        lines += [f"### {_md(env)}", "", f"![learning curves of {_md(env)}]({FIGURES}/{name})", ""]
    return lines


def _sign_change_section(diagnostics: pd.DataFrame, curves: tuple[pd.DataFrame, list[Path]], run_table: pd.DataFrame,
                         out: Path, colors: dict[str, str]) -> list[str]:
    lines = ["## Sign-change ratio and other diagnostics", ""]
    table = run_table.join(diagnostics, on="run", how="inner") if not diagnostics.empty else pd.DataFrame()
    if not table.empty:  # per run the mean over its logged updates (results.summarize_metrics), then per setting over runs
        weight = (pd.to_numeric(table["alpha"], errors="coerce") + pd.to_numeric(table["beta"], errors="coerce")
                  * pd.to_numeric(table["z"], errors="coerce").abs() * table["action_prob"])  # mean of a linear weight
        table["sa2c_weight"] = weight.where(table["algo"].eq("sa2c"))
    columns = {"sign_change_ratio": "mean sign-change ratio", "clipped_share": "updates clipped by max_grad_norm",
               "sa2c_weight": "SA2C's mean per-sample weight α + β·abs(Z)·p"}
    columns = {c: name for c, name in columns.items() if c in table and table[c].notna().any()}
    if not columns:
        return lines + ["No run logged a sign-change ratio, gradient norm or action probability, so there is nothing "
                        "to show.", ""]
    lines += ["Per run, the mean over its logged updates; then the mean over seeds. The sign-change ratio is the share "
              "of samples whose advantage sign the per-minibatch normalisation flips (A2C-family runs do not normalise "
              "advantages); the clip share is how often the global gradient norm exceeded max_grad_norm (each logged "
              "value is an update's mean over its minibatches); SA2C's weight lies between α and c = α + β·abs(Z), p "
              "being the probability of the taken action.", "",
              "| environment | noise | algorithm | " + " | ".join(columns.values()) + " | seeds |",
              "|---|---|---|" + "---|" * (len(columns) + 1)]
    for (env, noise, algorithm), rows in table.groupby(stats.GROUP_COLUMNS, sort=True):
        cells = [format_number(rows[c].mean()) for c in columns]
        lines.append(f"| {_md(env)} | {_md(noise)} | {_md(algorithm)} | " + " | ".join(cells) + f" | {len(rows)} |")
    lines.append("")
    curve, stored = curves
    summarized = int(sum(not (Path(run) / runs.METRICS).is_file() for run in table["run"]))
    if summarized > 0:
        drawn = (f"the sign-change curves of their settings are the means stored in {_count(len(stored), 'file')} "
                 f"{results.METRIC_CURVES} (over the runs each was written from: "
                 f"{', '.join(f'`{_md(path)}`' for path in stored)})" if stored else
                 f"the sign-change curves need metrics.csv or a {results.METRIC_CURVES} and are not drawn"
                 if summarized == len(table) else f"the sign-change curves are drawn from the other {len(table) - summarized}")
        lines += [f"{summarized} of {len(table)} runs kept only their per-run means ({results.METRICS_SUMMARY}, not "
                  f"metrics.csv): the table uses them; {drawn}.", ""]
    if curve.empty:
        return lines + ([] if summarized > 0 else
                        ["No run logged a sign-change ratio (A2C-family runs do not normalise advantages).", ""])
    curve = curve.rename(columns={"sign_change_ratio": "mean"})
    for index, (env, rows) in enumerate(curve.groupby("env", sort=True)):
        name = f"sign_change_{index}_{_slug(env)}.png"
        _plot_panels(rows, out / FIGURES / name, colors, title=str(env), ylabel="sign-change ratio")
        lines += [f"![sign-change ratio of {_md(env)}]({FIGURES}/{name})", ""]
    return lines


LM_COLUMNS = {"kl": "KL to the reference", "win_rate": "win rate vs reference", "perplexity": "perplexity on references"}


def _language_model_section(evaluations: pd.DataFrame, out: Path, colors: dict[str, str]) -> list[str]:
    """For `symrl rlhf` runs: KL to the reference, win rate and perplexity at the final evaluation with
    t-intervals over seeds, and KL over training (nothing for Gymnasium runs)."""
    present = [c for c in LM_COLUMNS if c in evaluations and pd.to_numeric(evaluations[c], errors="coerce").notna().any()]
    if "kl" not in present:
        return []
    table = evaluations.copy()
    for column in present:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    final = results.final_evaluations(table)
    lines = ["## Language-model runs: KL, win rate, perplexity", "",
             "At each run's last evaluation (fixed held-out prompts, clean reward): the KL of the policy to the frozen "
             "reference on its own samples, the win rate against the human reference (ties count half) and the "
             "policy's perplexity on prompt + reference; mean over seeds with a 95% t-interval.", "",
             "| task | noise | algorithm | " + " | ".join(LM_COLUMNS[c] for c in present) + " |",
             "|---|---|---|" + "---|" * len(present)]
    for (env, noise, algorithm), rows in final.groupby(stats.GROUP_COLUMNS, sort=True):
        cells = []
        for column in present:
            values = rows[column].dropna()
            if values.empty:
                cells.append("–")
                continue
            mean, low, high = stats.mean_ci(values)
            cells.append(format_ci(mean, low, high, len(values)))
        lines.append(f"| {_md(env)} | {_md(noise)} | {_md(algorithm)} | " + " | ".join(cells) + " |")
    lines.append("")
    curves = stats.learning_curve(table, value="kl")
    for index, (env, rows) in enumerate(curves.groupby("env", sort=True)):
        name = f"kl_{index}_{_slug(env)}.png"
        _plot_panels(rows, out / FIGURES / name, colors, title=str(env), ylabel="KL to the reference",
                     xlabel="trajectories sampled")
        lines += ["KL over training (mean over seeds, band = 95% t-interval):", "",
                  f"![KL to the reference over training, {_md(env)}]({FIGURES}/{name})", ""]
    return lines


def _robustness_section(scores: pd.DataFrame, normalizations: dict, margin: float) -> list[str]:
    """Clean vs noisy per algorithm, and each symmetric variant against its rescaled control (symrl.stats)."""
    lines = ["## Robustness to reward noise", ""]
    table = stats.loss_columns(scores) if not scores.empty else scores
    if table.empty:
        return lines + ["No run has an evaluation yet.", ""]
    both = [f"{a} on {e}" for (e, a), g in table.groupby(["env", "algorithm"], sort=True) if g["clean"].nunique() == 2]
    if not both:
        settings = ", ".join(sorted(map(str, table["noise"].unique())))
        return lines + [f"Skipped: no algorithm has runs both clean and with noise on one environment (noise settings: "
                        f"{_md(settings)}); robustness is the change from clean to noisy rewards, so train both.", ""]
    lines += [
        "Everything here is on the normalised scale (0 = a random policy, 1 = the reference score), so that tasks can "
        "be pooled and one margin applies to all:", "",
    ]
    lines += [f"- {_md(normalizations[env].describe(env))}" for env in sorted(normalizations)]
    lines += ["", "### Change from clean to noisy rewards", "",
              "Mean normalised score over seeds, and noisy − clean with a 95% Welch interval (negative: the noise hurts). "
              "MDD: the minimum detectable difference, the true change these seeds would detect with 80% power.", "",
              "| environment | algorithm | noise | clean | noisy | noisy − clean [95% CI] | MDD | seeds (min) |",
              "|---|---|---|---|---|---|---|---|"]
    for row in stats.noise_effects(table).itertuples():
        lines.append(f"| {_md(row.env)} | {_md(row.algorithm)} | {_md(row.noise)} | {format_number(row.clean)} | "
                     f"{format_number(row.noisy)} | {format_interval(row.estimate, row.low, row.high)} | "
                     f"{format_number(row.mdd)} | {row.n} |")
    comparisons, skipped = stats.robustness_comparisons(table, margin=margin)
    lines += ["", "### Symmetric variants against their controls", "",
              "The control of a variant X is the plain algorithm with its policy loss scaled by X's c = α + β·abs(Z) "
              "(SPPO with the authors' mask has exactly that gradient, SPEC 1.1), and for SA2C, whose per-sample weight "
              "is α + β·abs(Z)·p, also the unscaled algorithm. Noisy difference: X − C under noise. Difference in "
              "differences: (X − C) noisy − (X − C) clean, positive when X loses less to the noise than C. Each with a "
              "95% Welch–Satterthwaite interval; pooled rows average the tasks' contrasts with equal weights "
              "(environment as a fixed effect) and give Holm-adjusted p-values over all pooled rows.", "",
              f"Verdicts: **helps** if the effect is above 0 (p < 0.05; Holm-adjusted for pooled rows); **no useful "
              f"effect** if the interval's upper bound is below the margin {format_number(margin)}; **inconclusive** "
              "otherwise. MDD: the minimum detectable difference at 80% power.", ""]
    if comparisons.empty:
        lines += ["No comparison could be made."]
    else:
        lines += ["| task | X | control | noise | comparison | X − C [95% CI] | p (Holm) | MDD | seeds (min) | verdict |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in comparisons.itertuples():
            task = row.env if row.scope == "pooled" or not row.bins else f"{row.env} ({int(row.bins)} bins)"
            p = format_number(row.p) + (f" ({format_number(row.p_holm)})" if row.scope == "pooled" else "")
            lines.append(f"| {_md(task)} | {_md(row.variant)} | {_md(row.control)} | {_md(row.noise)} | {row.comparison} | "
                         f"{format_interval(row.estimate, row.low, row.high)} | {p} | {format_number(row.mdd)} | {row.n} | "
                         f"**{row.verdict}** |")
    if skipped:
        lines += ["", "Not compared:", ""] + [f"- {_md(line)}" for line in skipped]
    return lines + [""]


def console_summary(
    dirs: PathLike | Iterable[PathLike], fraction: Optional[float] = None, margin: Optional[float] = None,
    min_max: Collection[str] = (),
) -> tuple[list[str], list[str]]:
    """What ``symrl report`` and ``symrl demo`` print: the report's per-environment table (run scores, mean over
    seeds [95% t-interval]) and its robustness verdicts, as lines; and what the report warns about."""
    fraction = stats.SCORE_FRACTION if fraction is None else fraction
    evaluations = results.load_evaluations(_as_paths(dirs))
    table = summary_table(evaluations, fraction=fraction)
    if table.empty:
        return ["no run has an evaluation yet"], []
    column = f"score (mean return, last {fraction:.0%} of training) [95% CI]"
    table[column] = [format_ci(r.mean, r.low, r.high, r.n) + (f" {UNFINISHED_MARK}" if r.unfinished else "")
                     for r in table.itertuples()]
    lines = [table[["env", "noise", "algorithm", column]].to_string(index=False)]
    if table["unfinished"].any():
        lines.append(f"{UNFINISHED_MARK} includes runs not finished (their last evaluation)")
    lines += robustness_lines(evaluations, fraction=fraction, margin=stats.MARGIN if margin is None else margin,
                              min_max=min_max)
    return lines, stats.pooling_warnings(evaluations)


def robustness_lines(
    source: PathLike | Iterable[PathLike] | pd.DataFrame, fraction: float = stats.SCORE_FRACTION, margin: float = stats.MARGIN,
    min_max: Collection[str] = (),
) -> list[str]:
    """The robustness verdicts of runs as console lines: each noise setting's effect on each algorithm, then each
    pooled (or, with one task, per-task) variant-vs-control comparison with its verdict. Computed from the runs."""
    evaluations = source if isinstance(source, pd.DataFrame) else results.load_evaluations(_as_paths(source))
    scores, _ = stats.normalize_scores(stats.run_scores(evaluations, fraction), value="score", min_max=min_max)
    if scores.empty:
        return []
    lines = []
    for row in stats.noise_effects(scores).itertuples():
        effect = "hurts" if row.high < 0 else "helps" if row.low > 0 else "has no resolved effect on"
        lines.append(f"noise {row.noise} {effect} {row.algorithm} on {row.env}: noisy - clean = "
                     f"{format_interval(row.estimate, row.low, row.high)} (normalised; MDD {format_number(row.mdd)})")
    comparisons, skipped = stats.robustness_comparisons(scores, margin=margin)
    pooled = comparisons[comparisons["scope"] == "pooled"]
    for row in (pooled if not pooled.empty else comparisons).itertuples():
        lines.append(f"{row.verdict}: {row.variant} vs {row.control}, {row.comparison} under {row.noise} on {row.env}: "
                     f"{format_interval(row.estimate, row.low, row.high)} (MDD {format_number(row.mdd)}, margin "
                     f"{format_number(margin)})")
    return lines + [f"not compared: {line}" for line in skipped]


def _control_section(scores: pd.DataFrame, evaluations: pd.DataFrame, out: Path, colors: dict[str, str]) -> list[str]:
    """SPPO next to PPO with policy_coef = c, the control for SPPO's rescaling of PPO's gradient, in raw returns;
    and SPPO and its control of the same seed side by side, which track each other."""
    if scores.empty or "algo" not in scores:
        return []
    table = stats.loss_columns(scores)
    symmetric = table[(table["algo"] == "sppo") & (table["beta"] > 0)]
    control = table[(table["algo"] == "ppo") & (table["beta"] == 0) & (table["policy_coef"] != 1)]
    if symmetric.empty:
        return []
    lines = [
        "## SPPO vs the scaled-PPO control", "",
        "With the authors' reverse mask, SPPO's policy gradient equals PPO's multiplied by c = α + β·abs(z) (times the "
        "SPPO run's own policy_coef; 2 in place of abs(z) for the MAE variant), so PPO with "
        "policy_coef = c is the control that isolates that rescaling: a difference between SPPO and the control points to "
        "something other than the rescaling. Scores (raw returns) with a 95% Welch t-interval for the difference: where it "
        "excludes 0 the two differ; where it includes 0 the study did not resolve a difference, which is not evidence "
        "that there is none (the MDD says how large a difference these seeds would detect with 80% power). Pairs share "
        "environment, noise setting and action discretisation (bins).", "",
    ]
    keys = ["env", "noise", "bins"]
    rows_out, pairs = [], []
    for key, sppo_rows in symmetric.groupby(keys, sort=True):
        controls = control[(control[keys] == pd.Series(key, index=keys)).all(axis=1)]
        for sppo_label, sppo_group in sppo_rows.groupby("algorithm", sort=True):
            for control_label, control_group in controls.groupby("algorithm", sort=True):
                rows_out.append(_control_row(key[0], key[1], sppo_label, sppo_group, control_label, control_group))
                pairs.append((sppo_group, control_group))
    if not rows_out:
        return lines + ["No SPPO run has a scaled-PPO control (`ppo` with beta = 0 and policy_coef = c) on the same "
                        "environment, noise setting and action discretisation; train one to tell SPPO from a rescaled PPO.", ""]
    lines += ["| environment | noise | SPPO | scaled-PPO control | SPPO score | control score | difference (SPPO − control) | "
              "MDD | verdict | c (SPPO) | policy_coef (control) | c matches |", "|---" * 12 + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows_out]
    lines.append("")
    other_mask = symmetric["reverse_mask"].fillna("ppo").ne("ppo") if "reverse_mask" in symmetric else False
    per_dim = symmetric["per_dim_reverse"].eq(True) if "per_dim_reverse" in symmetric else False
    if np.any(other_mask | per_dim):
        lines += ["Note: some SPPO runs do not use the authors' mask (reverse_mask other than ppo, or a per-dimension "
                  "reverse term), so for them the gradient is not exactly PPO's times c.", ""]
    return lines + _tracking_lines(pairs, evaluations, out, colors)


def _tracking_lines(pairs: list, evaluations: pd.DataFrame, out: Path, colors: dict[str, str]) -> list[str]:
    """SPPO (authors' mask) and its control run with the same seed: the evaluations on which their returns are equal,
    and one seed's curves. Same gradient up to float rounding: they track each other until rounding separates them."""
    def authors_mask(runs: pd.DataFrame) -> bool:
        mask = runs["reverse_mask"].fillna("ppo").eq("ppo").all() if "reverse_mask" in runs else True
        return bool(mask and not (runs["per_dim_reverse"].eq(True).any() if "per_dim_reverse" in runs else False))

    masked = [(x, c) for x, c in pairs if authors_mask(x)] if "run" in evaluations else []
    rows, curves = [], []
    for sppo, control in masked:
        for seed in sorted(set(sppo["seed"]) & set(control["seed"])):
            def curve(runs: pd.DataFrame) -> pd.Series:
                run = runs.loc[runs["seed"] == seed, "run"].iloc[0]  # noqa: B023 (used at once)
                return evaluations[evaluations["run"] == run].set_index("step")["mean_return"]

            x, c = curve(sppo), curve(control)
            steps = x.index.intersection(c.index).sort_values()
            if steps.empty:
                continue
            same = np.isclose(x[steps].to_numpy(float), c[steps].to_numpy(float), rtol=1e-9, atol=1e-9)
            identical = int(np.argmin(same)) if not same.all() else len(steps)  # evaluations equal from the first on
            row = sppo.iloc[0]
            rows.append((row["env"], row["noise"], seed, identical, len(steps),
                         steps[identical] if identical < len(steps) else None))
            if not curves:
                curves = [(row["env"], row["noise"], seed, str(row["algorithm"]), x[steps]),
                          (row["env"], row["noise"], seed, str(control["algorithm"].iloc[0]), c[steps])]
    if not rows:
        return []
    lines = ["### SPPO and its control, seed by seed", "",
             "Runs of SPPO (authors' mask) and of its scaled-PPO control with the same seed share the environment's "
             "random streams and, up to float rounding, the gradient: they start identical and drift apart only once "
             "rounding differences grow, which chaotic training amplifies. Per seed, how many evaluations from the "
             "first on have equal returns, and the first that differs:", "",
             "| environment | noise | seed | identical evaluations from the start | first step that differs |",
             "|---|---|---|---|---|"]
    lines += [f"| {_md(env)} | {_md(noise)} | {seed} | {equal} of {total} | "
              f"{format_number(first) if first is not None else 'none'} |" for env, noise, seed, equal, total, first in rows]
    env, noise, seed = curves[0][:3]
    figure = Figure(figsize=(5.0, 3.3), layout="constrained")
    axis = figure.subplots()
    for _, _, _, label, curve in curves:
        axis.plot(curve.index, curve.to_numpy(float), label=label, color=colors.get(label),
                  linestyle="--" if label == curves[1][3] else "-")
    axis.set_title(f"{env} · {noise} · seed {seed}", fontsize=9)
    axis.set_xlabel("environment steps")
    axis.set_ylabel("evaluation return")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    _save_figure(figure, out / FIGURES / "sppo_control_same_seed.png")
    return lines + ["", f"![SPPO and its control, one seed]({FIGURES}/sppo_control_same_seed.png)", ""]


def _control_row(
    env: str, noise: str, sppo_label: str, sppo: pd.DataFrame, control_label: str, control: pd.DataFrame
) -> list[str]:
    sppo_ci, control_ci = stats.mean_ci(sppo["score"]), stats.mean_ci(control["score"])
    difference = stats.contrast([(1.0, sppo["score"]), (-1.0, control["score"])])

    def unfinished(runs: pd.DataFrame) -> str:
        return f" {UNFINISHED_MARK}" if (runs["state"] != "finished").any() else ""

    coefficients = sorted({round(float(c), 6) for c in sppo["c"]})
    policy_coefs = sorted({round(float(c), 6) for c in control["policy_coef"]})
    matches = all(np.isclose(c, p) for c in coefficients for p in policy_coefs)
    return [
        _md(env), _md(noise), _md(sppo_label), _md(control_label),
        format_ci(*sppo_ci, sppo["score"].notna().sum()) + unfinished(sppo),
        format_ci(*control_ci, control["score"].notna().sum()) + unfinished(control),
        format_interval(difference.estimate, difference.low, difference.high), format_number(difference.mdd),
        _verdict(difference),
        ", ".join(format_number(c) for c in coefficients), ", ".join(format_number(p) for p in policy_coefs),
        "yes" if matches else "no",
    ]


def _verdict(difference: stats.Contrast) -> str:
    """What a difference's interval says: higher, lower, or not resolved (it contains 0, or there is none)."""
    if difference.low > 0:
        return "SPPO higher"
    if difference.high < 0:
        return "SPPO lower"
    return "not resolved"


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
def _slug(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-") or "env"


def _plot_panels(rows: pd.DataFrame, path: Path, colors: dict[str, str], title: str, ylabel: str,
                 xlabel: str = "environment steps") -> None:
    """One panel per noise setting, one line (and CI band, where the table has low/high) per algorithm."""
    noises = sorted(rows["noise"].unique())
    figure = Figure(figsize=(4.2 * len(noises), 3.3), layout="constrained")
    axes = figure.subplots(1, len(noises), squeeze=False)[0]
    for axis, noise in zip(axes, noises, strict=True):
        for algorithm, curve in rows[rows["noise"] == noise].groupby("algorithm", sort=True):
            curve = curve.sort_values("step")
            color = colors.get(algorithm)
            axis.plot(curve["step"], curve["mean"], label=str(algorithm), color=color)
            if "low" in curve:
                axis.fill_between(curve["step"], curve["low"], curve["high"], color=color, alpha=0.2, linewidth=0)
        axis.set_title(f"{title} · {noise}", fontsize=9)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _save_figure(figure, path)


def _save_figure(figure: Figure, path: Path) -> None:
    """A PNG written atomically, like every other file of a report."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    runs.atomic_write_bytes(path, buffer.getvalue())


def _plot_aggregates(aggregates: pd.DataFrame, path: Path, colors: dict[str, str]) -> None:
    """IQM and optimality gap, one horizontal interval per (noise, algorithm)."""
    labels = sorted({(row.noise, row.algorithm) for row in aggregates.itertuples()})
    figure = Figure(figsize=(8.4, 0.45 * len(labels) + 1.2), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    for axis, metric in zip(axes, ("IQM", "optimality gap"), strict=True):
        rows = aggregates[aggregates["metric"] == metric].set_index(["noise", "algorithm"])
        for position, label in enumerate(labels):
            row = rows.loc[label]
            axis.errorbar(row["estimate"], position, xerr=[[row["estimate"] - row["low"]], [row["high"] - row["estimate"]]],
                          fmt="o", color=colors.get(label[1]), capsize=3)
        axis.set_title(metric + (" (lower is better)" if metric == "optimality gap" else ""), fontsize=9)
        axis.set_xlabel("normalised score")
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), [f"{algorithm} · {noise}" for noise, algorithm in labels], fontsize=8)
    axes[0].invert_yaxis()
    _save_figure(figure, path)


# --------------------------------------------------------------------------------------------------
# Markdown -> HTML, for the subset written above
# --------------------------------------------------------------------------------------------------
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
_CSS = ("body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#222}"
        "table{border-collapse:collapse;margin:0.5rem 0 1rem;font-size:0.9rem}th,td{border:1px solid #ccc;padding:0.25rem 0.5rem;"
        "text-align:left}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 0.2rem}")


def _inline(text: str) -> str:
    """Escape HTML, then render `code`, **bold** and the backslash escapes of :func:`_md`."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"(?<!\\)`(.+?)(?<!\\)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"(?<!\\)\*\*(.+?)(?<!\\)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"\\([\\|*`])", r"\1", escaped)


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def _image(alt: str, source: str, base_dir: Path) -> str:
    data = base64.b64encode((base_dir / source).read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def markdown_to_html(markdown: str, base_dir: PathLike, title: str = "report") -> str:
    """A self-contained HTML page from the Markdown this module writes: headings, paragraphs, pipe tables,
    ``-`` lists, ``**bold**``, ``code`` and block images (PNG files under ``base_dir``, embedded as data URIs)."""
    base_dir = Path(base_dir)
    lines = markdown.splitlines()
    body: list[str] = []
    paragraph: list[str] = []

    def flush_paragraph() -> None:
        if paragraph:
            body.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    index = 0
    while index < len(lines):
        line = lines[index].strip()
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        image = _IMAGE.fullmatch(line)
        if not line:
            flush_paragraph()
        elif heading:
            flush_paragraph()
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif image:
            flush_paragraph()
            body.append(_image(image.group(1), image.group(2), base_dir))
        elif line.startswith("|"):
            flush_paragraph()
            block = []
            while index < len(lines) and lines[index].strip().startswith("|"):
                block.append(lines[index].strip())
                index += 1
            body.append(_table(block))
            continue
        elif line.startswith("- "):
            flush_paragraph()
            items = []
            while index < len(lines) and lines[index].strip().startswith("- "):
                items.append(f"<li>{_inline(lines[index].strip()[2:])}</li>")
                index += 1
            body.append("<ul>" + "".join(items) + "</ul>")
            continue
        else:
            paragraph.append(line)
        index += 1
    flush_paragraph()
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def _table(block: list[str]) -> str:
    header, rows = block[0], block[1:]
    if rows and _TABLE_RULE.match(rows[0]):
        rows = rows[1:]
    head = "".join(f"<th>{_inline(cell)}</th>" for cell in _cells(header))
    body = "".join("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in _cells(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
