"""Statistics of a study: confidence intervals over seeds, normalised scores and rliable's aggregates.

A handful of seeds per setting is the norm in deep RL, so every number a report states comes with an
interval: a percentile bootstrap over seeds for one environment, and rliable's stratified bootstrap
(Agarwal et al., "Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021) for the IQM, the
optimality gap and the probability of improvement across environments. Everything is seeded, so a report
built twice from the same runs states the same numbers.

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

CONFIDENCE = 0.95
GROUP_COLUMNS = ["env", "noise", "algorithm"]


# --------------------------------------------------------------------------------------------------
# one setting: intervals over seeds
# --------------------------------------------------------------------------------------------------
def _finite(values: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[~np.isnan(array)]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray | pd.Series, confidence: float = CONFIDENCE, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean over seeds and its percentile-bootstrap confidence interval.

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
    The interval is Student's t, ``mean +- t(n-1) * sd / sqrt(n)``, not a bootstrap: a bootstrap over 2-5
    seeds is too narrow, and this runs at every step of every curve. With one seed it is NaN (no band).
    Runs must evaluate at the same steps to be pooled (a sweep's runs do).
    """
    columns = [*GROUP_COLUMNS, "step", "mean", "low", "high", "n"]
    table = evaluations.dropna(subset=[value]) if not evaluations.empty else evaluations
    if table.empty:
        return pd.DataFrame(columns=columns)
    grouped = table.groupby([*GROUP_COLUMNS, "step"], sort=True)[value]
    curve = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        t_quantile = scipy.stats.t.ppf((1.0 + confidence) / 2.0, curve["n"] - 1)
        half_width = t_quantile * curve["sd"].fillna(0.0) / np.sqrt(curve["n"])
    half_width = np.where(curve["n"] > 1, half_width, np.nan)
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


def score_matrices(normalized: pd.DataFrame, value: str = "normalized") -> dict[str, dict[str, np.ndarray]]:
    """rliable's input: for each noise setting, ``{algorithm: runs x tasks}`` with envs as tasks.

    The tasks of a noise setting are the envs that every algorithm of that setting has runs on (a stratified
    bootstrap compares algorithms on the same tasks). rliable needs the same number of runs on every task,
    so when an algorithm has different seed counts on different envs, each env contributes its
    ``min`` count of runs (lowest seeds first); the other runs are left out of the aggregates only.
    """
    matrices: dict[str, dict[str, np.ndarray]] = {}
    table = normalized.dropna(subset=[value])
    for noise, setting in table.groupby("noise", sort=True):
        envs_per_algorithm = setting.groupby("algorithm")["env"].apply(set)
        tasks = sorted(set.intersection(*envs_per_algorithm)) if len(envs_per_algorithm) else []
        if not tasks:
            continue
        per_algorithm = {}
        for algorithm, rows in setting[setting["env"].isin(tasks)].groupby("algorithm", sort=True):
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
