"""Statistics of a study: confidence intervals over seeds, normalised scores and rliable's aggregates.

A handful of seeds per setting is the norm in deep RL, so every number a report states comes with an
interval: Student's t over seeds for one environment (a percentile bootstrap of 3-5 seeds covers the mean
only 75-85% of the time at a nominal 95%; t keeps its coverage), Welch's t for the difference of two
settings, and rliable's stratified bootstrap (Agarwal et al., "Deep RL at the Edge of the Statistical
Precipice", NeurIPS 2021) for the IQM, the optimality gap and the probability of improvement across
environments, where runs x environments make the sample larger. Everything is seeded, so a report built
twice from the same runs states the same numbers.

Inputs are the tables of :mod:`symrl.results` (one row per run per evaluation, labelled by ``env``,
``noise``, ``algorithm`` and ``seed``).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from . import atari_scores
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
    either side has fewer than 2 values, or when both are constant."""
    x, y = _finite(a), _finite(b)
    if x.size == 0 or y.size == 0:
        return (float("nan"),) * 3
    difference = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return difference, float("nan"), float("nan")
    var_x, var_y = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if var_x + var_y == 0:
        return difference, float("nan"), float("nan")
    df = (var_x + var_y) ** 2 / (var_x**2 / (x.size - 1) + var_y**2 / (y.size - 1))
    half = float(scipy.stats.t.ppf((1.0 + confidence) / 2.0, df) * np.sqrt(var_x + var_y))
    return difference, difference - half, difference + half


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
# normalisation: one scale across environments
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Normalization:
    """How an env's scores were put on a common scale: ``(score - low) / (high - low)``."""

    method: str  # "human" (Atari: low = random agent, high = human) or "min-max" (over this study's runs)
    low: float
    high: float
    game: Optional[str] = None

    def describe(self, env: str) -> str:
        """One sentence for a report."""
        if self.method == "human":
            return (f"{env}: human-normalised, (score - random) / (human - random) with the published scores of {self.game} "
                    f"(random agent {self.low:g}, human {self.high:g}; 0 = random play, 1 = human).")
        if self.high == self.low:
            return f"{env}: every final score equals {self.low:.4g}, so every run scores 0 (min-max is undefined)."
        return (f"{env}: min-max over all final evaluations of this env in the study (every algorithm and noise setting), "
                f"{self.low:.4g} -> 0 and {self.high:.4g} -> 1; comparable across algorithms of this study only.")


def normalize_scores(final: pd.DataFrame, value: str = "mean_return") -> tuple[pd.DataFrame, dict[str, Normalization]]:
    """A copy of ``final`` with a ``normalized`` column, and the :class:`Normalization` used for each env.

    Aggregates across environments need one scale. Atari games with published random and human scores
    (:mod:`symrl.atari_scores`) are human-normalised; any other env is min-max normalised over all runs of
    that env in ``final`` (every algorithm and noise setting together, so one algorithm's 0.8 and another's
    0.6 are on the same scale). ``final`` is normally :func:`symrl.results.final_evaluations`' output.
    """
    table = final.copy()
    table["normalized"] = np.nan
    used: dict[str, Normalization] = {}
    for env, rows in table.groupby("env", sort=True):
        scores = rows[value].astype(float)
        reference = atari_scores.atari_scores(str(env))
        if reference is not None:
            norm = Normalization("human", reference.random, reference.human, atari_scores.game_from_env_id(str(env)))
        else:
            norm = Normalization("min-max", float(scores.min()), float(scores.max()))
        span = norm.high - norm.low
        table.loc[rows.index, "normalized"] = (scores - norm.low) / span if span != 0 else 0.0
        used[str(env)] = norm
    return table, used


# --------------------------------------------------------------------------------------------------
# aggregates across environments (rliable)
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _rliable():
    """rliable's ``library`` and ``metrics`` modules.

    rliable 1.2 (the latest release) needs arch 7 (it passes ``random_state``, which arch 8 removed), and
    arch 7 needs pandas 2: symrl's dependencies pin both (``arch<8``, ``pandas<3``).
    """
    try:
        from rliable import library, metrics
    except (ImportError, TypeError) as exc:
        raise SymrlError(f"aggregate statistics need rliable with arch 7 and pandas 2 ({exc.__class__.__name__}: {exc}); "
                         "pip install rliable 'arch<8' 'pandas<3'") from None
    return library, metrics


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """rliable's bootstraps draw from NumPy's global RNG (``np.random.choice``); seed it, then put it back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


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
    """IQM and optimality gap of the normalised final scores, per noise setting and algorithm, with rliable's
    stratified-bootstrap CIs (``rly.get_interval_estimates``, percentile method, ``reps`` resamples).

    Columns ``noise, algorithm, metric ("IQM" or "optimality gap"), estimate, low, high, runs, tasks``
    (``runs`` per task, see :func:`score_matrices`). The optimality gap (threshold 1) is how far scores fall
    short of 1 (human, or the best run in the study under min-max): lower is better. NumPy's global RNG is
    seeded with ``seed`` before each algorithm's bootstrap, so each interval is reproducible on its own.
    """
    library, metrics = _rliable()
    rows = []

    def iqm_and_gap(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_optimality_gap(scores)])

    for noise, per_algorithm in score_matrices(normalized).items():
        for algorithm, scores in per_algorithm.items():
            with _numpy_global_seed(seed):
                points, intervals = library.get_interval_estimates(
                    {algorithm: scores}, iqm_and_gap, reps=reps, confidence_interval_size=confidence)
            for index, metric in enumerate(("IQM", "optimality gap")):
                rows.append({"noise": noise, "algorithm": algorithm, "metric": metric,
                             "estimate": float(points[algorithm][index]), "low": float(intervals[algorithm][0, index]),
                             "high": float(intervals[algorithm][1, index]), "runs": scores.shape[0], "tasks": scores.shape[1]})
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
    :func:`improvement_probability`), with rliable's stratified-bootstrap CI (``rly.get_interval_estimates``
    on the pair) in which both algorithms' runs are resampled independently.

    Columns ``noise, algorithm, baseline, estimate, low, high``; one row per other algorithm of each noise
    setting in which ``baseline`` ran. 0.5 means no difference.
    """
    library, _ = _rliable()
    rows = []
    for noise, per_algorithm in score_matrices(normalized).items():
        if baseline not in per_algorithm:
            continue
        for algorithm, scores in per_algorithm.items():
            if algorithm == baseline:
                continue
            key = f"{algorithm},{baseline}"
            with _numpy_global_seed(seed):
                points, intervals = library.get_interval_estimates(
                    {key: [scores, per_algorithm[baseline]]}, improvement_probability,
                    reps=reps, confidence_interval_size=confidence)
            rows.append({"noise": noise, "algorithm": algorithm, "baseline": baseline, "estimate": float(points[key]),
                         "low": float(np.ravel(intervals[key])[0]), "high": float(np.ravel(intervals[key])[1])})
    return pd.DataFrame(rows, columns=["noise", "algorithm", "baseline", "estimate", "low", "high"])
