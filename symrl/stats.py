"""Statistics of a study: confidence intervals over seeds, normalised scores and aggregates across environments.

A handful of seeds per setting is the norm in deep RL, so every number a report states comes with an
interval: Student's t over seeds for one environment (a percentile bootstrap of 3-5 seeds covers the mean
only 75-85% of the time at a nominal 95%; t keeps its coverage), Welch's t for the difference of two
settings, and the stratified bootstrap of rliable (Agarwal et al., "Deep RL at the Edge of the Statistical
Precipice", NeurIPS 2021; computed here, checked against rliable 1.2's numbers) for the IQM, the optimality gap
and the probability of improvement across environments, where runs x environments make the sample larger.
Everything is seeded, so a report built twice from the same runs states the same numbers.

Inputs are the tables of :mod:`symrl.results` (one row per run per evaluation, labelled by ``env``,
``noise``, ``algorithm`` and ``seed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from . import anchors
from .errors import SymrlError
from .results import CONFIG_COLUMNS

CONFIDENCE = 0.95
GROUP_COLUMNS = ["env", "noise", "algorithm"]


# --------------------------------------------------------------------------------------------------
# what is pooled: one (env, noise, algorithm) should be one config over several seeds
# --------------------------------------------------------------------------------------------------
def pooling_warnings(evaluations: pd.DataFrame) -> list[str]:
    """Why the runs pooled into one (env, noise, algorithm) may not belong together, one sentence each.

    Statistics treat a group's runs as seeds of one config. Runs without a sweep's labels are labelled from
    their config (``SPPO``, ``scaled PPO``...), so two SPPO configs with different beta, or two controls
    with different policy_coef, would be pooled silently: this names the config columns that differ, seeds
    that appear twice, and runs whose evaluation steps do not line up (their curves would not pool).
    """
    if evaluations.empty:
        return []
    found = []
    steps_of = evaluations.groupby("run")["step"].apply(sorted)
    per_run = evaluations.drop_duplicates("run")
    columns = [c for c in CONFIG_COLUMNS if c in per_run]
    for key, group in per_run.groupby(GROUP_COLUMNS, sort=True):
        name = " / ".join(map(str, key))
        differing = [c for c in columns if group[c].astype(str).nunique() > 1]
        if differing:
            found.append(f"{name}: its runs differ in {', '.join(differing)}, yet are pooled as seeds of one setting; "
                         "give each config its own label (a sweep's algorithm names, or labels.json in the run directory)")
        repeated = sorted(set(group.loc[group["seed"].duplicated(), "seed"]))
        if repeated:
            found.append(f"{name}: seed {', '.join(map(str, repeated))} appears in more than one run; each counts as a "
                         "separate seed")
        steps = [steps_of[run] for run in group["run"]]
        every_step = sorted(set().union(*steps))
        if any(run_steps != every_step[: len(run_steps)] for run_steps in steps):
            found.append(f"{name}: its runs evaluate at different steps, so learning curves pool them only where steps "
                         "coincide")
    return found


# --------------------------------------------------------------------------------------------------
# one setting: intervals over seeds
# --------------------------------------------------------------------------------------------------
def _finite(values: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[~np.isnan(array)]


def _t_half_width(sd, n, confidence: float):
    """``t(df = n - 1) * sd / sqrt(n)``: half the width of Student's t interval of a mean (NaN for n < 2)."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = scipy.stats.t.ppf((1.0 + confidence) / 2.0, n - 1) * np.asarray(sd, dtype=float) / np.sqrt(n)
    return np.where(n > 1, half, np.nan)


def mean_ci(values: Sequence[float] | np.ndarray | pd.Series, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean over seeds and Student's t confidence interval,
    ``mean +- t(n-1) * sd / sqrt(n)``.

    What a report states for one setting: at 3-10 seeds it keeps its nominal coverage where a percentile
    bootstrap (:func:`bootstrap_ci`) is too narrow. NaNs (runs without that number) are dropped; one value
    gives NaN bounds (one seed says nothing about the spread); no value gives NaNs.
    """
    sample = _finite(values)
    if sample.size == 0:
        return (float("nan"),) * 3
    mean = float(sample.mean())
    half = float(_t_half_width(sample.std(ddof=1) if sample.size > 1 else np.nan, sample.size, confidence))
    return mean, mean - half, mean + half


def difference_ci(
    a: Sequence[float] | np.ndarray | pd.Series, b: Sequence[float] | np.ndarray | pd.Series, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), low, high)`` with Welch's t interval (unequal variances, Welch-Satterthwaite
    degrees of freedom): whether two settings differ, which two overlapping CIs cannot say. NaN bounds when
    either side has fewer than 2 values, or when both are constant. :func:`contrast` of ``[(1, a), (-1, b)]``."""
    result = contrast([(1.0, a), (-1.0, b)], confidence)
    return result.estimate, result.low, result.high


def bootstrap_ci(
    values: Sequence[float] | np.ndarray | pd.Series, confidence: float = CONFIDENCE, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean over seeds and its percentile-bootstrap confidence interval (too
    narrow for a few seeds: the report uses :func:`mean_ci`).

    Resamples the values with replacement ``n_boot`` times (``np.random.default_rng(seed)``, so the same
    values give the same interval) and takes the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    quantiles of the resampled means. NaNs (runs without that number) are dropped; one value gives
    ``(v, v, v)``, since one seed says nothing about the spread; no value gives NaNs.
    """
    sample = _finite(values)
    if sample.size == 0:
        return (float("nan"),) * 3
    mean = float(sample.mean())
    if sample.size == 1 or np.all(sample == sample[0]):
        return (mean, mean, mean)
    rng = np.random.default_rng(seed)
    resampled_means = sample[rng.integers(0, sample.size, size=(n_boot, sample.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled_means, [tail, 1.0 - tail])
    return mean, float(low), float(high)


def separated(ci_a: Sequence[float], ci_b: Sequence[float]) -> bool:
    """Whether two intervals do not overlap (the last two entries are low and high: ``(mean, low, high)``
    and ``(low, high)`` both work). NaN bounds never separate."""
    low_a, high_a = float(ci_a[-2]), float(ci_a[-1])
    low_b, high_b = float(ci_b[-2]), float(ci_b[-1])
    if np.isnan([low_a, high_a, low_b, high_b]).any():
        return False
    return high_a < low_b or high_b < low_a


def iqm(values: Sequence[float] | np.ndarray | pd.Series) -> float:
    """Interquartile mean exactly as rliable's ``aggregate_iqm``: ``scipy.stats.trim_mean(x, 0.25)`` over the
    flattened scores (drops ``int(0.25 * n)`` values at each end). It is robust to outlier runs yet uses half
    of them, unlike the median. NaNs are dropped first."""
    return float(scipy.stats.trim_mean(_finite(values), proportiontocut=0.25, axis=None))


def learning_curve(evaluations: pd.DataFrame, confidence: float = CONFIDENCE, value: str = "mean_return") -> pd.DataFrame:
    """Per (env, noise, algorithm) and evaluation step: mean over seeds, a t-based CI and the number of seeds.

    Columns ``env, noise, algorithm, step, mean, low, high, n``. Runs of unequal length are fine: a step's
    statistics use the runs that reached it (``n`` says how many), so a curve may end on fewer seeds.
    The interval is Student's t, as in :func:`mean_ci`. With one seed it is NaN (no band).
    Runs must evaluate at the same steps to be pooled (a sweep's runs do).
    """
    columns = [*GROUP_COLUMNS, "step", "mean", "low", "high", "n"]
    table = evaluations.dropna(subset=[value]) if not evaluations.empty else evaluations
    if table.empty:
        return pd.DataFrame(columns=columns)
    grouped = table.groupby([*GROUP_COLUMNS, "step"], sort=True)[value]
    curve = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    half_width = _t_half_width(curve["sd"].fillna(0.0), curve["n"], confidence)
    curve["low"] = curve["mean"] - half_width
    curve["high"] = curve["mean"] + half_width
    curve["n"] = curve["n"].astype(int)
    return curve[columns]


# --------------------------------------------------------------------------------------------------
# a run's score: its mean clean evaluation return late in training
# --------------------------------------------------------------------------------------------------
SCORE_FRACTION = 0.2
SCORE_COLUMNS = ["run", *GROUP_COLUMNS, "seed", "state", "score", "evaluations", "last_step"]


def run_scores(evaluations: pd.DataFrame, fraction: float = SCORE_FRACTION, value: str = "mean_return") -> pd.DataFrame:
    """One row per run: its ``score``, the mean of its (clean) evaluation returns over the last ``fraction`` of its
    training, i.e. at steps >= (1 - fraction) x its ``total_steps``.

    Averaging several evaluations is less noisy than one final evaluation of a few episodes. A run that stopped
    before that window (diverged, or not finished) is scored at its last evaluation: every run counts. Runs
    without ``total_steps`` (language-model runs) use their last evaluated step as the budget. Columns
    ``run, env, noise, algorithm, seed, state, score, evaluations`` (how many were averaged), ``last_step`` and
    the config columns of :data:`symrl.results.CONFIG_COLUMNS` present in ``evaluations``.
    """
    if not 0.0 < fraction <= 1.0:
        raise SymrlError(f"the score fraction must be in (0, 1], got {fraction!r}; e.g. 0.2 averages the last 20% of training")
    extra = [c for c in CONFIG_COLUMNS if c in evaluations]
    table = evaluations.dropna(subset=[value]) if not evaluations.empty else evaluations
    if table.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS + extra)
    rows = []
    for run, group in table.groupby("run", sort=True):
        group = group.sort_values("step")
        last_step = float(group["step"].iloc[-1])
        budget = pd.to_numeric(group["total_steps"], errors="coerce").iloc[0] if "total_steps" in group else np.nan
        budget = last_step if not np.isfinite(budget) else float(budget)
        window = group[group["step"] >= (1.0 - fraction) * budget]
        window = window if not window.empty else group.tail(1)
        first = group.iloc[0]
        rows.append({"run": run, **{c: first[c] for c in GROUP_COLUMNS}, "seed": first.get("seed"),
                     "state": first.get("state", "finished"), "score": float(window[value].astype(float).mean()),
                     "evaluations": len(window), "last_step": last_step, **{c: first[c] for c in extra}})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS + extra)


# --------------------------------------------------------------------------------------------------
# normalisation: one scale across environments
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Normalization:
    """How an env's scores were put on a common scale: ``(score - low) / (high - low)``."""

    method: str  # "anchors" (fixed: random -> 0, a documented reference -> 1) or "min-max" (over this study's runs)
    low: float
    high: float
    source: Optional[str] = None
    chosen: bool = False  # min-max asked for although fixed anchors exist (a study analysed as pre-registered)

    def describe(self, env: str) -> str:
        """One sentence for a report."""
        if self.method == "anchors":
            return (f"{env}: fixed anchors, (score - {self.low:g}) / ({self.high:g} - {self.low:g}): 0 = a random policy, "
                    f"1 = the reference ({self.source}).")
        why = ("min-max asked for (--min-max) instead of its fixed anchors, as the study was pre-registered"
               if self.chosen else "no fixed anchors (symrl/anchors.yaml), so min-max over this study's runs of it (fallback)")
        if self.high == self.low:
            return f"{env}: {why}, and every score equals {self.low:.4g}, so every run scores 0 (undefined)."
        return (f"{env}: {why}: {self.low:.4g} -> 0 and {self.high:.4g} -> 1; comparable across algorithms of this study "
                "only, and it moves when runs are added.")


def normalize_scores(
    final: pd.DataFrame, value: str = "mean_return", min_max: Collection[str] = (),
) -> tuple[pd.DataFrame, dict[str, Normalization]]:
    """A copy of ``final`` with a ``normalized`` column, and the :class:`Normalization` used for each env.

    Aggregates and pooled comparisons across environments need one scale. Environments with fixed anchors
    (:func:`symrl.anchors.anchor`: Atari's random and human scores, the table of ``symrl/anchors.yaml``) map a
    random policy to 0 and the reference to 1; any other env falls back to min-max over all runs of that env in
    ``final`` (every algorithm and noise setting together), which the :class:`Normalization` labels. Envs named in
    ``min_max`` use min-max although they have anchors: a study pre-registered before its envs got anchors keeps
    its analysis (the robustness study's MinAtar games).
    ``final`` is normally :func:`run_scores`' output (``value="score"``) or :func:`symrl.results.final_evaluations`'.
    """
    unknown = sorted(set(min_max) - set(final["env"].astype(str)))
    if unknown:
        raise SymrlError(f"min-max asked for {', '.join(unknown)}, which no run has; give env ids of the runs, e.g. "
                         f"{', '.join(sorted(set(final['env'].astype(str)))[:3])}")
    table = final.copy()
    table["normalized"] = np.nan
    used: dict[str, Normalization] = {}
    for env, rows in table.groupby("env", sort=True):
        scores = rows[value].astype(float)
        fixed = anchors.anchor(str(env))
        if fixed is not None and str(env) not in min_max:
            norm = Normalization("anchors", fixed.random, fixed.reference, fixed.source)
        else:
            norm = Normalization("min-max", float(scores.min()), float(scores.max()), chosen=fixed is not None)
        span = norm.high - norm.low
        table.loc[rows.index, "normalized"] = (scores - norm.low) / span if span != 0 else 0.0
        used[str(env)] = norm
    return table, used


# --------------------------------------------------------------------------------------------------
# aggregates across environments (rliable's methods)
# --------------------------------------------------------------------------------------------------
def stratified_bootstrap(func: Callable[..., Any], arrays: Sequence[np.ndarray], reps: int = 2000,
                         confidence: float = CONFIDENCE, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate and percentile interval of ``func(*arrays)`` (each array runs x tasks) by the stratified
    bootstrap of Agarwal et al. (2021), as rliable's ``get_interval_estimates`` computes it: in each of ``reps``
    resamples, every array's runs are drawn with replacement within each task (column), independently per array
    and per task; the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the
    resampled estimates. Draws come from ``np.random.default_rng(seed)`` (NumPy's global generator is untouched).
    tests/test_stats.py compares the intervals with rliable 1.2's. Returns ``(point, low, high)``, each of the
    shape of ``func``'s value."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    point = np.asarray(func(*arrays), dtype=float)
    estimates = np.empty((reps, *point.shape))
    for rep in range(reps):
        resampled = [a[rng.integers(a.shape[0], size=a.shape), np.arange(a.shape[1])] for a in arrays]
        estimates[rep] = func(*resampled)
    low, high = np.percentile(estimates, [50 * (1 - confidence), 50 * (1 + confidence)], axis=0)
    return point, low, high


def optimality_gap(scores: np.ndarray, threshold: float = 1.0) -> float:
    """How far normalised scores fall short of ``threshold`` on average (rliable's ``aggregate_optimality_gap``)."""
    return float(threshold - np.minimum(np.asarray(scores, dtype=float), threshold).mean())


@dataclass(frozen=True)
class AggregateScope:
    """The envs (tasks) and algorithms a noise setting's aggregates compare, and what was left out for that."""

    tasks: tuple[str, ...]
    algorithms: tuple[str, ...]
    left_out_algorithms: dict  # algorithm -> the envs it has no runs on
    left_out_envs: tuple[str, ...]

    def describe(self, noise: str) -> Optional[str]:
        """One sentence for a report, or None when nothing was left out."""
        if not self.tasks:
            return f"{noise}: no environment has runs of every algorithm, so there is nothing to aggregate."
        parts = [f"{algorithm} (no runs on {', '.join(sorted(envs))})"
                 for algorithm, envs in sorted(self.left_out_algorithms.items())]
        if parts:
            return f"{noise}: left out of the aggregates, which compare algorithms on the same environments: {'; '.join(parts)}."
        if self.left_out_envs:
            return (f"{noise}: {', '.join(self.left_out_envs)} left out of the aggregates: not every algorithm has runs "
                    "there, and the aggregates compare algorithms on the same environments.")
        return None


def aggregate_scope(setting: pd.DataFrame) -> AggregateScope:
    """Which envs and algorithms of one noise setting's table the aggregates use. A stratified bootstrap
    compares algorithms on the same tasks, so either the algorithms without runs on some env are left out
    (keeping every env) or the envs without runs of some algorithm are (keeping every algorithm), whichever
    keeps more (algorithm, env) cells; a tie keeps every algorithm."""
    envs_per_algorithm = {str(a): set(map(str, envs)) for a, envs in setting.groupby("algorithm")["env"].apply(set).items()}
    if not envs_per_algorithm:
        return AggregateScope((), (), {}, ())
    every_env = set.union(*envs_per_algorithm.values())
    shared = set.intersection(*envs_per_algorithm.values())
    complete = sorted(a for a, envs in envs_per_algorithm.items() if envs == every_env)
    if len(complete) * len(every_env) > len(envs_per_algorithm) * len(shared):
        missing = {a: every_env - envs for a, envs in envs_per_algorithm.items() if a not in complete}
        return AggregateScope(tuple(sorted(every_env)), tuple(complete), missing, ())
    return AggregateScope(tuple(sorted(shared)), tuple(sorted(envs_per_algorithm)), {}, tuple(sorted(every_env - shared)))


def aggregate_scopes(normalized: pd.DataFrame, value: str = "normalized") -> dict[str, AggregateScope]:
    """:func:`aggregate_scope` of each noise setting."""
    table = normalized.dropna(subset=[value])
    return {str(noise): aggregate_scope(setting) for noise, setting in table.groupby("noise", sort=True)}


def score_matrices(normalized: pd.DataFrame, value: str = "normalized") -> dict[str, dict[str, np.ndarray]]:
    """rliable's input: for each noise setting, ``{algorithm: runs x tasks}`` with envs as tasks.

    The tasks and algorithms of a noise setting are its :func:`aggregate_scope` (a stratified bootstrap
    compares algorithms on the same tasks). rliable needs the same number of runs on every task, so when an
    algorithm has different seed counts on different envs, each env contributes its ``min`` count of runs
    (lowest seeds first); the other runs are left out of the aggregates only.
    """
    matrices: dict[str, dict[str, np.ndarray]] = {}
    table = normalized.dropna(subset=[value])
    for noise, setting in table.groupby("noise", sort=True):
        scope = aggregate_scope(setting)
        tasks = list(scope.tasks)
        if not tasks:
            continue
        per_algorithm = {}
        chosen = setting[setting["env"].astype(str).isin(tasks) & setting["algorithm"].astype(str).isin(scope.algorithms)]
        for algorithm, rows in chosen.groupby("algorithm", sort=True):
            columns = [rows[rows["env"] == env].sort_values("seed")[value].to_numpy(float) for env in tasks]
            runs = min(len(column) for column in columns)
            per_algorithm[str(algorithm)] = np.stack([column[:runs] for column in columns], axis=1)
        matrices[str(noise)] = per_algorithm
    return matrices


def aggregate_metrics(
    normalized: pd.DataFrame, reps: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """IQM and optimality gap of the normalised final scores, per noise setting and algorithm, with
    stratified-bootstrap CIs (:func:`stratified_bootstrap`, rliable's method: percentile, ``reps`` resamples).

    Columns ``noise, algorithm, metric ("IQM" or "optimality gap"), estimate, low, high, runs, tasks``
    (``runs`` per task, see :func:`score_matrices`). The optimality gap (threshold 1) is how far scores fall
    short of 1 (human, or the best run in the study under min-max): lower is better. Each algorithm's bootstrap
    starts from ``seed``, so each interval is reproducible on its own.
    """
    rows = []

    def iqm_and_gap(scores: np.ndarray) -> np.ndarray:
        return np.array([iqm(scores), optimality_gap(scores)])

    for noise, per_algorithm in score_matrices(normalized).items():
        for algorithm, scores in per_algorithm.items():
            point, low, high = stratified_bootstrap(iqm_and_gap, [scores], reps, confidence, seed)
            for index, metric in enumerate(("IQM", "optimality gap")):
                rows.append({"noise": noise, "algorithm": algorithm, "metric": metric, "estimate": float(point[index]),
                             "low": float(low[index]), "high": float(high[index]), "runs": scores.shape[0],
                             "tasks": scores.shape[1]})
    return pd.DataFrame(rows, columns=["noise", "algorithm", "metric", "estimate", "low", "high", "runs", "tasks"])


def improvement_probability(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's ``metrics.probability_of_improvement`` (runs x tasks inputs), computed without SciPy.

    Per task, the Mann-Whitney U of X over Y divided by ``n_x * n_y`` is ``P(x > y) + P(x = y) / 2`` over all
    pairs of runs (0.5 for identical columns, as in rliable); the result is its mean over tasks. Same
    numbers (see the tests), but vectorised: rliable's version calls ``scipy.stats.mannwhitneyu`` once per
    task per bootstrap resample, which made it the slowest part of a report.
    """
    pairs_x, pairs_y = scores_x[:, None, :], scores_y[None, :, :]
    per_task = (pairs_x > pairs_y).mean(axis=(0, 1)) + 0.5 * (pairs_x == pairs_y).mean(axis=(0, 1))
    return float(per_task.mean())


def probability_of_improvement(
    normalized: pd.DataFrame, baseline: str, reps: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """P(algorithm > baseline): the chance that a run of the algorithm beats a run of the baseline on a
    random task, averaged over tasks (rliable's probability of improvement, a Mann-Whitney statistic, see
    :func:`improvement_probability`), with the stratified-bootstrap CI of :func:`stratified_bootstrap` on the
    pair, in which both algorithms' runs are resampled independently.

    Columns ``noise, algorithm, baseline, estimate, low, high``; one row per other algorithm of each noise
    setting in which ``baseline`` ran. 0.5 means no difference.
    """
    rows = []
    for noise, per_algorithm in score_matrices(normalized).items():
        if baseline not in per_algorithm:
            continue
        for algorithm, scores in per_algorithm.items():
            if algorithm == baseline:
                continue
            point, low, high = stratified_bootstrap(improvement_probability, [scores, per_algorithm[baseline]], reps,
                                                    confidence, seed)
            rows.append({"noise": noise, "algorithm": algorithm, "baseline": baseline, "estimate": float(point),
                         "low": float(low), "high": float(high)})
    return pd.DataFrame(rows, columns=["noise", "algorithm", "baseline", "estimate", "low", "high"])


# --------------------------------------------------------------------------------------------------
# contrasts of group means: differences, differences in differences, pooled over environments
# --------------------------------------------------------------------------------------------------
POWER = 0.8
MARGIN = 0.1  # normalised score: the smallest effect worth having (a tenth of the random -> reference span)


@dataclass(frozen=True)
class Contrast:
    """A weighted sum of independent group means ``sum_i w_i * mean(x_i)`` with Welch-Satterthwaite inference.

    ``se = sqrt(sum_i w_i^2 s_i^2 / n_i)``, ``df = se^4 / sum_i (w_i^2 s_i^2 / n_i)^2 / (n_i - 1)``; ``low``/``high``
    the t interval, ``p`` the two-sided p-value of "the contrast is 0", and ``mdd`` the minimum detectable
    difference: the true value that a two-sided test at this level would detect with probability ``POWER``
    (``(t_{1-a/2, df} + t_{power, df}) * se``, from the observed variances).
    """

    estimate: float
    low: float
    high: float
    se: float
    df: float
    p: float
    mdd: float
    n: int  # the smallest number of values in any group


def contrast(
    terms: Sequence[tuple[float, Sequence[float] | np.ndarray | pd.Series]], confidence: float = CONFIDENCE, power: float = POWER
) -> Contrast:
    """:class:`Contrast` of ``[(weight, values), ...]``: e.g. ``[(1, a), (-1, b)]`` is Welch's difference of means,
    ``[(1, x_noisy), (-1, c_noisy), (-1, x_clean), (1, c_clean)]`` a difference in differences, and the same terms
    of K environments each weighted 1/K the mean of the K per-environment contrasts (environment as a fixed
    effect). NaNs are dropped; any group with fewer than 2 values, or all variances 0, gives NaN bounds."""
    samples = [(float(weight), _finite(values)) for weight, values in terms]
    return contrast_from_summaries(
        [(weight, float(x.mean()) if x.size else np.nan, float(x.std(ddof=1)) if x.size > 1 else np.nan, x.size)
         for weight, x in samples], confidence, power)


def contrast_from_summaries(
    terms: Sequence[tuple[float, float, float, int]], confidence: float = CONFIDENCE, power: float = POWER
) -> Contrast:
    """:func:`contrast` from each group's ``(weight, mean, standard deviation, n)`` instead of its values (e.g. the
    numbers a published table gives)."""
    nan = float("nan")
    n = min((int(size) for *_, size in terms), default=0)
    if not terms or n == 0:
        return Contrast(nan, nan, nan, nan, nan, nan, nan, n)
    estimate = float(sum(weight * mean for weight, mean, _, _ in terms))
    if n < 2:
        return Contrast(estimate, nan, nan, nan, nan, nan, nan, n)
    parts = np.array([weight**2 * sd**2 / size for weight, _, sd, size in terms])
    sizes = np.array([size for *_, size in terms], dtype=float)
    total = float(parts.sum())
    if total == 0:
        return Contrast(estimate, nan, nan, 0.0, nan, nan, nan, n)
    df = total**2 / float(np.sum(parts**2 / (sizes - 1)))
    se = float(np.sqrt(total))
    critical = float(scipy.stats.t.ppf((1.0 + confidence) / 2.0, df))
    p = float(2.0 * scipy.stats.t.sf(abs(estimate) / se, df))
    mdd = (critical + float(scipy.stats.t.ppf(power, df))) * se
    return Contrast(estimate, estimate - critical * se, estimate + critical * se, se, float(df), p, mdd, n)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control over ``len(p_values)`` comparisons):
    sorted ascending, the i-th (from 0) is multiplied by ``m - i``, made non-decreasing, capped at 1. NaNs stay
    NaN and do not count."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def verdict(result: Contrast, margin: float = MARGIN, confidence: float = CONFIDENCE, p: Optional[float] = None) -> str:
    """The decision rule of a variant-vs-control comparison (higher is better):

    - ``helps``: the effect is above 0 (``p``, by default the contrast's own p-value, below ``1 - confidence``
      and a positive estimate; unadjusted, that is the interval lying above 0);
    - ``no useful effect``: the interval's upper bound is below ``margin`` (a large effect is ruled out, which
      includes effects clearly below 0);
    - ``inconclusive``: anything else, including a missing interval.
    """
    p = result.p if p is None else p
    if np.isfinite(p) and p < 1.0 - confidence and result.estimate > 0:
        return "helps"
    if np.isfinite(result.high) and result.high < margin:
        return "no useful effect"
    return "inconclusive"


# --------------------------------------------------------------------------------------------------
# robustness: clean vs noisy rewards, each symmetric variant against the control that rescales like it
# --------------------------------------------------------------------------------------------------
SYMMETRIC_BASE = {"sppo": "ppo", "sa2c": "a2c", "sgrpo": "grpo", "srloo": "rloo"}
LOSS_DEFAULTS = {"alpha": 1.0, "beta": 0.0, "z": -1.0, "policy_coef": 1.0, "bins": 0}


def loss_columns(scores: pd.DataFrame) -> pd.DataFrame:
    """A copy of a per-run table with the loss settings filled (``alpha``, ``beta``, ``z``, ``policy_coef``, ``bins``,
    defaults where missing), ``c`` = the factor by which the run's policy gradient scales the plain algorithm's
    (``policy_coef * (alpha + beta * |z|)``, 2 in place of ``|z|`` for the MAE variant: SPEC 1.1), ``clean``
    (no reward or advantage noise) and ``variant`` (a symmetric algorithm with beta > 0)."""
    table = scores.copy()
    for key, default in LOSS_DEFAULTS.items():
        table[key] = pd.to_numeric(table[key], errors="coerce").fillna(default) if key in table else default
    mae = table["loss_variant"].eq("mae") if "loss_variant" in table else pd.Series(False, index=table.index)
    table["c"] = table["policy_coef"] * (table["alpha"] + table["beta"] * table["z"].abs().where(~mae, 2.0))

    def unset(column: str) -> pd.Series:
        if column not in table:
            return pd.Series(True, index=table.index)
        return table[column].isna() | table[column].astype(str).str.strip().str.lower().isin(["", "none", "null"])

    table["clean"] = unset("reward_noise") & unset("adv_noise")
    algo = table["algo"].astype(str) if "algo" in table else pd.Series("", index=table.index)
    table["variant"] = algo.isin(list(SYMMETRIC_BASE)) & (table["beta"] > 0)
    return table


def noise_effects(scores: pd.DataFrame, value: str = "normalized", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per environment and algorithm, each noisy setting's change from clean: ``mean(noisy) - mean(clean)`` with
    Welch's interval and its minimum detectable difference (negative = noise hurts).

    ``scores`` is :func:`run_scores`' table with ``value`` (normally after :func:`normalize_scores`). Columns
    ``env, algorithm, noise, clean, noisy`` (means), ``estimate, low, high, p, mdd, n``."""
    table = loss_columns(scores)
    columns = ["env", "algorithm", "noise", "clean", "noisy", "estimate", "low", "high", "p", "mdd", "n"]
    rows = []
    for (env, algorithm), group in table.groupby(["env", "algorithm"], sort=True):
        clean = group[group["clean"]]
        if clean.empty:
            continue
        for noise, noisy in group[~group["clean"]].groupby("noise", sort=True):
            result = contrast([(1.0, noisy[value]), (-1.0, clean[value])], confidence)
            rows.append({"env": env, "algorithm": algorithm, "noise": noise, "clean": float(clean[value].mean()),
                         "noisy": float(noisy[value].mean()), **_contrast_fields(result)})
    return pd.DataFrame(rows, columns=columns)


def _contrast_fields(result: Contrast) -> dict:
    return {"estimate": result.estimate, "low": result.low, "high": result.high, "p": result.p, "mdd": result.mdd,
            "n": result.n}


@dataclass(frozen=True)
class ControlPair:
    """A symmetric variant and a control of the same task (environment and action bins)."""

    env: str
    bins: int
    variant: str  # labels
    control: str
    kind: str  # "rescaled" (policy_coef = the variant's c) or "plain" (policy_coef 1; SA2C's second control)
    c: float


def control_pairs(scores: pd.DataFrame) -> tuple[list[ControlPair], list[str]]:
    """Each symmetric variant (``sppo``, ``sa2c``, ``sgrpo``, ``srloo`` with beta > 0) with its controls on the same
    environment and bins: the plain algorithm (``ppo``/``a2c``/``grpo``/``rloo``, beta 0) with ``policy_coef``
    equal to the variant's c (SPPO with the authors' mask has exactly that gradient; SA2C's per-sample weight is
    ``alpha + beta|Z| p``, at most c) and, for SA2C, also the plain algorithm with ``policy_coef`` 1. Returns the
    pairs and one line per variant without a control, saying what to train."""
    table = loss_columns(scores)
    pairs, missing = [], []
    for (env, bins), task in table.groupby(["env", "bins"], sort=True):
        for label, rows in task[task["variant"]].groupby("algorithm", sort=True):
            algo = str(rows["algo"].iloc[0])
            base = SYMMETRIC_BASE[algo]
            c = float(rows["c"].iloc[0])
            candidates = task[(task["algo"].astype(str) == base) & (task["beta"] == 0) & ~task["variant"]]
            wanted = [("rescaled", c)] + ([("plain", 1.0)] if algo == "sa2c" and not np.isclose(c, 1.0) else [])
            for kind, coef in wanted:
                found = candidates[np.isclose(candidates["policy_coef"], coef)]["algorithm"].unique()
                if len(found) == 0:
                    where = f"{env}" + (f" with {int(bins)} bins" if bins else "")
                    missing.append(f"{label} on {where}: no {kind} control ({base} with beta 0 and policy_coef "
                                   f"{coef:g}); train `{base} --policy-coef {coef:g}` on it to compare")
                pairs += [ControlPair(str(env), int(bins), str(label), str(control), kind, c) for control in sorted(found)]
    return pairs, missing


COMPARISONS = ("noisy difference", "difference in differences")


def robustness_comparisons(
    scores: pd.DataFrame, value: str = "normalized", margin: float = MARGIN, confidence: float = CONFIDENCE
) -> tuple[pd.DataFrame, list[str]]:
    """Every symmetric variant against its controls (:func:`control_pairs`), per environment and pooled.

    For a variant X, a control C and a noisy setting N: the *noisy difference* ``X_N - C_N`` and the
    *difference in differences* ``(X_N - C_N) - (X_clean - C_clean)`` (does X lose less than C going from clean
    to noisy rewards?), each a :func:`contrast` of the runs' ``value``. ``pooled`` rows average the per-task
    contrasts of one (X, C, N) over the tasks (environment, bins) that have them, each task weighted equally
    (environment as a fixed effect), on the normalised scale; their ``p_holm`` is Holm-adjusted over all pooled
    rows, and their verdict uses it. Each row has a :func:`verdict` with ``margin``.

    Returns the table (columns ``scope`` ("task"/"pooled"), ``env``, ``bins``, ``variant``, ``control``, ``kind``,
    ``noise``, ``comparison``, ``estimate``, ``low``, ``high``, ``p``, ``p_holm``, ``mdd``, ``n``, ``tasks``,
    ``verdict``) and one line per comparison that could not be made, saying what is missing.
    """
    table = loss_columns(scores)
    pairs, skipped = control_pairs(scores)
    columns = ["scope", "env", "bins", "variant", "control", "kind", "noise", "comparison", "estimate", "low", "high",
               "p", "p_holm", "mdd", "n", "tasks", "verdict"]
    terms: dict[tuple, list] = {}  # (variant, control, kind, noise, comparison) -> [(task, terms)]
    rows = []
    for pair in pairs:
        task = table[(table["env"] == pair.env) & (table["bins"] == pair.bins)]
        x, c = task[task["algorithm"] == pair.variant], task[task["algorithm"] == pair.control]
        noisy = sorted(set(x.loc[~x["clean"], "noise"]) & set(c.loc[~c["clean"], "noise"]))
        if not noisy:
            skipped.append(f"{pair.variant} vs {pair.control} on {pair.env}: no noisy setting with runs of both; "
                           "robustness needs each with clean and noisy rewards")
            continue
        has_clean = x["clean"].any() and c["clean"].any()
        if not has_clean:
            skipped.append(f"{pair.variant} vs {pair.control} on {pair.env}: no clean runs of both, so no difference in "
                           "differences (only the noisy difference)")
        for noise in noisy:
            x_n, c_n = x[x["noise"] == noise][value], c[c["noise"] == noise][value]
            found = {"noisy difference": [(1.0, x_n), (-1.0, c_n)]}
            if has_clean:
                found["difference in differences"] = found["noisy difference"] + [(-1.0, x[x["clean"]][value]),
                                                                                   (1.0, c[c["clean"]][value])]
            for comparison, parts in found.items():
                result = contrast(parts, confidence)
                rows.append({"scope": "task", "env": pair.env, "bins": pair.bins, "variant": pair.variant,
                             "control": pair.control, "kind": pair.kind, "noise": noise, "comparison": comparison,
                             **_contrast_fields(result), "p_holm": np.nan, "tasks": 1,
                             "verdict": verdict(result, margin, confidence)})
                terms.setdefault((pair.variant, pair.control, pair.kind, noise, comparison), []).append(parts)
    pooled = []
    for (variant, control, kind, noise, comparison), per_task in sorted(terms.items()):
        if len(per_task) < 2:
            continue
        weight = 1.0 / len(per_task)
        result = contrast([(w * weight, values) for parts in per_task for w, values in parts], confidence)
        pooled.append({"scope": "pooled", "env": f"pooled ({len(per_task)} tasks)", "bins": np.nan, "variant": variant,
                       "control": control, "kind": kind, "noise": noise, "comparison": comparison,
                       **_contrast_fields(result), "tasks": len(per_task), "result": result})
    adjusted = holm([row["p"] for row in pooled])
    for row, p_holm in zip(pooled, adjusted, strict=True):
        row["p_holm"] = p_holm
        row["verdict"] = verdict(row.pop("result"), margin, confidence, p=p_holm)
    return pd.DataFrame(rows + pooled, columns=columns), skipped
