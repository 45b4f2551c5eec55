"""Run directories -> one tidy table, the input of every statistic, figure and report.

:func:`load_evaluations` gives one row per run per evaluation (``step``, ``mean_return``, ...) with the run's
labels and config as columns; :func:`load_metrics` does the same for the per-update training log
(``metrics.csv``: losses, sign-change ratio, ...). Both accept run directories and folders that contain
them (a sweep's output), and runs of unequal length.

Labels name what a study compares. A sweep writes them to ``labels.json`` in each run directory (e.g.
algorithm "scaled PPO", noise "gaussian 0.05"); other runs get them from their config: the algorithm's
name (``PPO``, ``SPPO``, ``DPPO`` with discretised actions, ``scaled DPPO`` with ``policy_coef`` != 1) and
the noise spec (``clean`` without noise).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from . import runs
from .config import read_config_mapping
from .errors import SymrlError

LABEL_COLUMNS = ["algorithm", "env", "noise", "seed"]
# config fields copied next to the labels (a report states them; filters use them)
CONFIG_COLUMNS = [
    "algo", "total_steps", "bins", "alpha", "beta", "z", "policy_coef", "loss_variant", "reverse_mask", "per_dim_reverse",
    "reward_noise", "adv_noise", "n_envs", "n_steps", "learning_rate", "eval_episodes", "max_grad_norm",
    "iterations", "batch_size",  # language-model runs (symrl rlhf)
]


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories (those holding ``config.yaml``) at or below each path, sorted; an error if none."""
    found: dict[Path, Path] = {}  # by resolved path: a run named twice (relative and absolute, or nested) counts once
    for path in map(Path, paths):
        if not path.exists():
            raise SymrlError(f"{path} does not exist; pass run directories or folders that contain them")
        if (path / runs.CONFIG).is_file():
            found.setdefault(path.resolve(), path)
        else:
            for config in path.rglob(runs.CONFIG):
                found.setdefault(config.parent.resolve(), config.parent)
    if not found:
        names = ", ".join(str(p) for p in paths)
        raise SymrlError(f"no symrl runs (directories with {runs.CONFIG}) in {names}; "
                         "pass a sweep's out folder or run directories")
    return sorted(found.values())


def runs_without_config(paths: Iterable[str | Path]) -> list[tuple[Path, dict]]:
    """Run directories that recorded a status but no ``config.yaml`` (a sweep cell that failed before its run
    started, e.g. on a setting its environment refuses), with that status: a report lists them as left out."""
    found = []
    for path in map(Path, paths):
        for status in sorted(path.rglob(runs.STATUS)) if path.is_dir() else ():
            if not (status.parent / runs.CONFIG).is_file():
                found.append((status.parent, runs.read_status(status.parent)))
    return found


def default_labels(config: dict) -> dict:
    """Labels for a run not made by a sweep, from its config."""
    name = str(config.get("algo", "?")).upper()
    if int(config.get("bins") or 0) > 0:
        name = "D" + name
    if float(config.get("policy_coef") or 1.0) != 1.0:
        name = f"scaled {name}"
    noise = config.get("reward_noise") or "clean"
    if config.get("adv_noise"):
        noise = f"{noise} + adv {config['adv_noise']}" if noise != "clean" else f"adv {config['adv_noise']}"
    return {"algorithm": name, "env": config.get("env") or config.get("task", "?"), "noise": noise}


def run_labels(run_dir: Path, config: Optional[dict] = None) -> dict:
    """``labels.json`` over the config-derived labels, plus the seed."""
    config = config if config is not None else read_config(run_dir)
    labels = default_labels(config)
    path = Path(run_dir) / runs.LABELS
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            raise SymrlError(f"{path} is not a JSON object of labels; delete it to fall back to labels from config.yaml")
        labels.update({k: str(v) for k, v in saved.items() if v is not None})  # labels are text (e.g. 5 -> "5")
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SymrlError(f"{Path(run_dir) / runs.CONFIG}: seed must be an integer, got {seed!r}; fix it or remove the run")
    labels["seed"] = seed
    return labels


def read_config(run_dir: Path) -> dict:
    return read_config_mapping(Path(run_dir) / runs.CONFIG)


def _run_columns(run_dir: Path) -> dict:
    config = read_config(run_dir)
    status = runs.read_status(run_dir)
    try:
        labels = run_labels(run_dir, config)
    except (TypeError, ValueError) as exc:  # e.g. bins: many
        raise SymrlError(f"{Path(run_dir) / runs.CONFIG} holds a malformed value ({exc}); fix it or remove the run") from None
    row = {"run": str(run_dir), **labels}
    row.update({key: config.get(key) for key in CONFIG_COLUMNS})
    row["state"] = status.get("state", "unknown")
    return row


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run, with or without evaluations: ``run``, labels, ``state`` and the config columns."""
    return pd.DataFrame([_run_columns(run_dir) for run_dir in find_runs(paths)])


def _read_csv(path: Path) -> pd.DataFrame:
    """A run's CSV log without a last row cut off by a killed writer (:func:`symrl.runs.whole_rows`)."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(io.StringIO(runs.whole_rows(path)))
    except (pd.errors.ParserError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def _load(paths: Iterable[str | Path], filename: str) -> pd.DataFrame:
    frames = []
    for run_dir in find_runs(paths):
        table = _read_csv(run_dir / filename)
        if table.empty:
            continue
        if "step" not in table or (filename == runs.EVAL and "mean_return" not in table):
            raise SymrlError(f"{run_dir / filename} lacks the step or mean_return column; is it a symrl file?")
        for column in ["step", "mean_return"] if filename == runs.EVAL else ["step"]:
            numbers = pd.to_numeric(table[column], errors="coerce")
            bad = numbers.isna() & table[column].notna()
            if bad.any():
                raise SymrlError(f"{run_dir / filename}: {column} {table[column][bad].iloc[0]!r} on row "
                                 f"{int(bad.idxmax()) + 2} is not a number; fix or delete that row")
            table[column] = numbers
        for key, value in _run_columns(run_dir).items():
            table[key] = value
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["run", *LABEL_COLUMNS, "step"])
    table = pd.concat(frames, ignore_index=True)
    first = ["run", *LABEL_COLUMNS, "state", "step"]
    return table[first + [c for c in table.columns if c not in first]].sort_values(["run", "step"], ignore_index=True)


def load_evaluations(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run per evaluation: labels, ``step``, ``mean_return``, ``std_return``, ``episodes``, config."""
    return _load(paths, runs.EVAL)


def load_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run per logged update (``metrics.csv``): labels, ``step``, losses, ``sign_change_ratio``..."""
    return _load(paths, runs.METRICS)


METRICS_SUMMARY = "metrics_summary.csv"  # per-run means of metrics.csv, kept by a study instead of the large logs
SUMMARY_COLUMNS = ["seconds", "last_step", "sign_change_ratio", "clipped_share", "action_prob"]


def summarize_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run (the index), from :func:`load_metrics`' table: ``seconds`` and ``last_step`` trained, the mean
    ``sign_change_ratio``, ``clipped_share`` (updates whose gradient norm exceeded ``max_grad_norm``, among those
    that logged one) and the mean ``action_prob`` (the taken actions' probability). Absent columns are NaN."""
    table = pd.DataFrame(index=pd.Index(metrics["run"].unique() if "run" in metrics else [], name="run"))
    numbers = {c: pd.to_numeric(metrics[c], errors="coerce") for c in
               ("time", "step", "sign_change_ratio", "action_prob", "grad_norm", "max_grad_norm") if c in metrics}
    if "grad_norm" in numbers and "max_grad_norm" in numbers:
        numbers["clipped"] = (numbers["grad_norm"] > numbers["max_grad_norm"]).where(numbers["grad_norm"].notna())
    for name, (column, how) in {"seconds": ("time", "max"), "last_step": ("step", "max"),
                                "sign_change_ratio": ("sign_change_ratio", "mean"), "clipped_share": ("clipped", "mean"),
                                "action_prob": ("action_prob", "mean")}.items():
        table[name] = numbers[column].astype(float).groupby(metrics["run"]).agg(how) if column in numbers else float("nan")
    return table


def load_metric_summaries(run_dirs: Iterable[str | Path], metrics: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per run (index ``run`` as in :func:`load_metrics`) with :data:`SUMMARY_COLUMNS`: computed from the
    run's ``metrics.csv`` when it holds one, else read from the nearest ``metrics_summary.csv`` in a folder above it
    (whose ``run`` column names runs by their path below that folder: ``studies/robustness/collect.py`` writes it,
    so that a study's committed small files rebuild its report). Runs with neither are left out. ``metrics``: their
    :func:`load_metrics` table when the caller has it already (it is not read again)."""
    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    logged = [run_dir for run_dir in run_dirs if (run_dir / runs.METRICS).is_file()]
    frames = [summarize_metrics(load_metrics(logged) if metrics is None else metrics)] if logged else []
    cache: dict[Path, pd.DataFrame] = {}
    rows = {}
    for run_dir in (run_dir for run_dir in run_dirs if run_dir not in logged):
        found = _nearest_rows(run_dir, METRICS_SUMMARY, cache,
                              lambda folder, table, run_dir=run_dir: table[table["run"] == run_dir.relative_to(folder).as_posix()]
                              if "run" in table else table.iloc[:0])
        if not found.empty:
            rows[str(run_dir)] = found.iloc[0].drop("run")
    if rows:
        frames.append(pd.DataFrame.from_dict(rows, orient="index").reindex(columns=SUMMARY_COLUMNS).rename_axis("run"))
    if not frames:
        return pd.DataFrame(columns=SUMMARY_COLUMNS, index=pd.Index([], name="run"))
    return pd.concat(frames).apply(pd.to_numeric, errors="coerce")


METRIC_CURVES = "metric_curves.csv"  # per setting and step, the mean sign-change ratio over a study's runs
CURVE_KEYS = ["env", "noise", "algorithm", "step"]


def curve_of_metrics(metrics: pd.DataFrame, column: str = "sign_change_ratio") -> pd.DataFrame:
    """Per (env, noise, algorithm, step) of :func:`load_metrics`' table: the mean of ``column`` over the runs that
    logged it at that step, and their number (``runs``). Empty when no run logged it."""
    values = pd.to_numeric(metrics[column], errors="coerce") if column in metrics else pd.Series(dtype=float)
    table = metrics.assign(**{column: values}).dropna(subset=[column]) if not values.empty else pd.DataFrame()
    if table.empty:
        return pd.DataFrame(columns=[*CURVE_KEYS, column, "runs"])
    return (table.groupby(CURVE_KEYS)[column].agg(["mean", "size"]).rename(columns={"mean": column, "size": "runs"})
            .reset_index())


def load_metric_curves(run_dirs: Iterable[str | Path], metrics: Optional[pd.DataFrame] = None,
                       column: str = "sign_change_ratio", run_table: Optional[pd.DataFrame] = None,
                       ) -> tuple[pd.DataFrame, list[Path]]:
    """:func:`curve_of_metrics` for these runs, and the ``metric_curves.csv`` files it read. A setting (env, noise,
    algorithm) whose runs all hold ``metrics.csv`` is computed from them; a setting with runs that do not takes its
    curve from the nearest ``metric_curves.csv`` above them (``studies/robustness/collect.py`` writes it beside
    ``metrics_summary.csv``: the mean over the runs it was written from, with their number). ``metrics``: the
    :func:`load_metrics` table of these runs and ``run_table`` their :func:`load_runs` table, when the caller has
    them already (they are not read again)."""
    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    metrics = load_metrics(run_dirs) if metrics is None else metrics
    table = pd.DataFrame([_run_columns(run_dir) for run_dir in run_dirs]) if run_table is None else run_table
    unlogged = [row for row in table.itertuples(index=False) if not (Path(row.run) / runs.METRICS).is_file()]
    settings = {(str(row.env), str(row.noise), str(row.algorithm)) for row in unlogged}  # labels compare as text

    def of_settings(frame: pd.DataFrame, chosen: set) -> list[bool]:
        return [key in chosen for key in frame[CURVE_KEYS[:-1]].astype(str).itertuples(index=False, name=None)]

    cache: dict[Path, pd.DataFrame] = {}
    frames, read = [], []
    for row in unlogged:
        found = _nearest_rows(Path(row.run), METRIC_CURVES, cache, lambda folder, rows: rows[of_settings(rows, settings)]
                              if {*CURVE_KEYS, column, "runs"} <= set(rows) else rows.iloc[:0])
        if not found.empty and found.attrs["path"] not in read:
            read.append(found.attrs["path"])
            frames.append(found[[*CURVE_KEYS, column, "runs"]].astype({key: str for key in CURVE_KEYS[:-1]}))
    covered = {key for frame in frames for key in frame[CURVE_KEYS[:-1]].itertuples(index=False, name=None)}
    curve = curve_of_metrics(metrics, column)  # settings without a stored curve keep the curve of their logged runs
    frames.insert(0, curve[[not chosen for chosen in of_settings(curve, covered)]] if not curve.empty else curve)
    frames = [frame for frame in frames if not frame.empty]
    return (pd.concat(frames, ignore_index=True) if frames else curve), read


def _nearest_rows(run_dir: Path, name: str, cache: dict[Path, pd.DataFrame], select) -> pd.DataFrame:
    """The rows that ``select(folder, table)`` picks from the nearest file ``name`` in a folder above ``run_dir``
    that has any (``attrs["path"]`` names the file); empty if none. ``cache`` holds the files read so far."""
    for folder in run_dir.parents:
        if folder not in cache:
            cache[folder] = _read_csv(folder / name)
        if not cache[folder].empty:
            rows = select(folder, cache[folder])
            if not rows.empty:
                rows.attrs["path"] = folder / name
                return rows
    return pd.DataFrame()


def final_evaluations(evaluations: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation of each run (runs of unequal length each contribute their own last one)."""
    if evaluations.empty:
        return evaluations
    return evaluations.sort_values("step").groupby("run", sort=True).tail(1).reset_index(drop=True)
