"""Sweep files: a grid of algorithms x environments x noise settings x seeds, resolved to run configs.

A sweep file is YAML (read safely; a key given twice in a mapping is an error)::

    name: demo                         # optional; default: the file name
    out: runs/demo                     # required: one run directory per cell is made below it
    steps: 50000                       # optional: total_steps of every cell
    seeds: 3                           # a count (0, 1, 2) or a list [0, 5, 7]; default 1
    preset: classic                    # optional: a preset for every cell (default: each env's family)
    algorithms:                        # required: names, or label -> algo and its overrides
      PPO: ppo
      SPPO: {algo: sppo, alpha: 0.5, beta: 1.0}
      scaled PPO: {algo: ppo, policy_coef: 1.5}
    envs: [CartPole-v1]                # required: ids, or id -> overrides
    noise:                             # optional: label -> reward-noise spec, null or overrides; default clean
      clean: null
      gaussian 0.1: gaussian:0.1
    overrides: {eval_freq: 5000}       # optional: Config fields for every cell
    cells:                             # optional: overrides for the cells that match
      - where: {algorithm: SPPO, env: CartPole-v1}
        set: {beta: 2.0}

Later wins: the preset, ``steps``, ``overrides``, the env's, the noise setting's, the algorithm's, then
every matching ``cells`` entry.

``kind: rlhf`` makes a sweep of language-model runs (``symrl rlhf``): ``envs`` lists tasks (sentiment, arithmetic,
imdb, tldr), ``algorithms`` are ppo/grpo/rloo or their symmetric forms sppo/sgrpo/srloo with
:class:`~symrl.rlhf.trainer.RLHFConfig` overrides, ``steps`` is the number of iterations, and a noise spec is
``flip:P``, ``gaussian:S`` or ``verifier:FP/FN``.

Every cell is resolved (and so validated) before anything runs; a mistake is one :class:`SymrlError`
naming the field and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import runs
from ..config import ALGOS, make_config
from ..errors import SymrlError
from ..rlhf.config import ALGOS as RLHF_ALGOS
from ..yamlfile import load_yaml_file, yaml_error_line

TOP_LEVEL = ("name", "out", "kind", "steps", "seeds", "preset", "algorithms", "envs", "noise", "overrides", "cells")
KINDS = ("rl", "rlhf")  # Gymnasium runs (symrl train) or language-model runs (symrl rlhf)
WHERE_KEYS = ("algorithm", "env", "noise", "seed")
MAX_SEEDS = 10_000
MAX_CELLS = 1_000_000  # a grid beyond this is a mistake in the file, not a study


@dataclass(frozen=True)
class Cell:
    """One run of the grid: where it goes, what the report calls it, and its resolved config."""

    key: str  # the run directory below the sweep's out folder: ENV/NOISE/ALGORITHM/seedS
    labels: dict
    config: Any  # Config, or RLHFConfig in a `kind: rlhf` sweep


@dataclass(frozen=True)
class Sweep:
    name: str
    out: Path
    cells: tuple[Cell, ...]

    def run_dir(self, cell: Cell) -> Path:
        return self.out / cell.key


def slug(label: str) -> str:
    """A label as a folder name: 'scaled PPO' -> 'scaled_PPO', 'gaussian:0.05' -> 'gaussian_0.05'; letters of any
    script stay ('日本語'); a label of dots only ('.', '..') would name this folder or its parent: its dots become '_'."""
    name = re.sub(r"[^\w.-]+", "_", str(label)).strip("_") or "_"
    return "_" * len(name) if set(name) == {"."} else name


def load_sweep(path: str | Path) -> Sweep:
    """Read and fully resolve a sweep file."""
    path = Path(path)
    if path.is_dir():
        raise SymrlError(f"{path} is a folder; pass the path of a YAML sweep file (see studies/)")
    if path.exists() and not path.is_file():
        raise SymrlError(f"{path} is not a regular file; pass the path of a YAML sweep file (see studies/)")
    if not path.is_file():
        raise SymrlError(f"sweep file {path} does not exist; pass the path of a YAML sweep file (see studies/)")
    try:
        data = load_yaml_file(path.read_text())
    except yaml.YAMLError as exc:
        raise SymrlError(f"{path} is not valid YAML ({yaml_error_line(exc)}); fix the file") from None
    return parse_sweep(data, default_name=path.stem, source=str(path))


def _fail(source: str, field: str, problem: str) -> SymrlError:
    return SymrlError(f"{source}: field `{field}`: {problem}")


def _mapping(value: Any, source: str, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(source, field, f"must be a mapping of config keys to values, got {value!r}")
    return value


def budget(config: Any) -> int:
    """What a run trains for: environment steps (``total_steps``) or language-model ``iterations``."""
    return getattr(config, config.BUDGET)


def is_rlhf(config: Any) -> bool:
    """A language-model run's config (an RLHFConfig, or its saved mapping)."""
    return runs.run_kind(config) == "rlhf"


def _unique(values: list, source: str, field: str) -> list:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise _fail(source, field, f"lists {repeated[0]} twice; each entry makes its own cells")
    return values


def _algorithms(value: Any, source: str, algos: tuple = ALGOS) -> dict[str, dict]:
    """label -> overrides including ``algo``."""
    if isinstance(value, list):
        value = {str(name).upper(): str(name) for name in _unique(value, source, "algorithms")}
    if not isinstance(value, dict) or not value:
        raise _fail(source, "algorithms", f"must be a non-empty list of names ({', '.join(algos)}) or a mapping "
                    "label -> {algo: ..., overrides}")
    out = {}
    for label, spec in value.items():
        field = f"algorithms.{label}"
        spec = {"algo": spec} if isinstance(spec, str) else _mapping(spec, source, field)
        if spec.get("algo") not in algos:
            raise _fail(source, f"{field}.algo", f"must be one of {', '.join(algos)}, got {spec.get('algo')!r}")
        out[str(label)] = dict(spec)
    return out


def _envs(value: Any, source: str) -> dict[str, dict]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        value = {str(env): {} for env in _unique(value, source, "envs")}
    if not isinstance(value, dict) or not value:
        raise _fail(source, "envs", "must be a non-empty list of Gymnasium ids or a mapping id -> overrides")
    return {str(env): _mapping(spec, source, f"envs.{env}") for env, spec in value.items()}


def _noise(value: Any, source: str) -> dict[str, dict]:
    """label -> overrides; a string is a reward-noise spec, null is no noise."""
    if value is None:
        return {"clean": {}}
    if isinstance(value, list):
        value = {("clean" if spec is None else str(spec)): spec for spec in _unique(value, source, "noise")}
    if not isinstance(value, dict) or not value:
        raise _fail(source, "noise", "must be a list of reward-noise specs (null = clean) or a mapping label -> spec")
    out = {}
    for label, spec in value.items():
        if spec is None:
            out[str(label)] = {}
        elif isinstance(spec, str):
            out[str(label)] = {"reward_noise": spec}
        else:
            out[str(label)] = _mapping(spec, source, f"noise.{label}")
    return out


def _seeds(value: Any, source: str) -> list[int]:
    if value is None:
        return [0]
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_SEEDS:
        raise _fail(source, "seeds", f"asks for {value:,} seeds; a sweep takes at most {MAX_SEEDS:,}")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        if len(set(value)) != len(value):
            raise _fail(source, "seeds", f"lists a seed twice: {value}")
        return list(value)
    raise _fail(source, "seeds", f"must be a positive count or a list of non-negative integers, got {value!r}")


def _cell_rules(value: Any, source: str) -> list[tuple[dict, dict]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(source, "cells", "must be a list of {where: {...}, set: {...}} entries")
    rules = []
    for i, rule in enumerate(value):
        field = f"cells[{i}]"
        if not isinstance(rule, dict) or set(rule) - {"where", "set"} or "set" not in rule:
            raise _fail(source, field, "must be a mapping with `where` (algorithm/env/noise/seed) and `set` (overrides)")
        where = _mapping(rule.get("where"), source, f"{field}.where")
        unknown = set(where) - set(WHERE_KEYS)
        if unknown:
            raise _fail(source, f"{field}.where", f"unknown key(s) {sorted(unknown)}; use {', '.join(WHERE_KEYS)}")
        rules.append((where, _mapping(rule["set"], source, f"{field}.set")))
    return rules


def _matches(where: dict, labels: dict, seed: int) -> bool:
    """Labels match case-insensitively: ``algorithms: [ppo]`` makes the label PPO, which ``algorithm: ppo`` names."""
    return all(seed == value if key == "seed" else str(labels[key]).lower() == str(value).lower()
               for key, value in where.items())


RESERVED = {"algo": "`algorithms`", "env": "`envs`", "task": "`envs` (the tasks of an rlhf sweep)",
            "preset": "the top-level `preset`", "seed": "`seeds` (a count or a list such as [0, 5, 7])"}


def _check_not_reserved(overrides: dict, source: str, field: str) -> None:
    """Keys the grid itself sets (under the label that names them) are not overrides."""
    for key, where in RESERVED.items():
        if key in overrides:
            raise _fail(source, field, f"sets `{key}`, which a sweep takes from {where}")


def _resolve(kind: str, algo: str, env: str, preset: Any, overrides: dict, checked: set) -> Any:
    if kind == "rlhf":
        from ..rlhf.tasks import make_rlhf_config  # noqa: PLC0415

        return make_rlhf_config(env, algo, **overrides)
    from ..trainer import check_fits  # noqa: PLC0415

    config = make_config(algo, env, preset, **{**overrides, "progress": False})  # a sweep shows its own bar
    # what only the environment can refuse, before anything runs; once per setting of what it depends on
    fits = (config.env, repr(config.env_kwargs), config.bins, config.beta != 0, config.network, config.vec_env,
            config.frame_stack)
    if fits not in checked:
        check_fits(config)
        checked.add(fits)
    return config


def parse_sweep(data: Any, default_name: str = "sweep", source: str = "sweep file") -> Sweep:
    """Resolve the parsed YAML of a sweep file into cells (see the module docstring for the format)."""
    if not isinstance(data, dict):
        raise SymrlError(f"{source}: must be a mapping with at least `out`, `algorithms` and `envs`")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise _fail(source, unknown[0], f"unknown field; the fields are {', '.join(TOP_LEVEL)}")
    for required in ("out", "algorithms", "envs"):
        if data.get(required) in (None, "", [], {}):
            raise _fail(source, required, "is required (out: the output folder; algorithms and envs: the grid)")
    kind = data.get("kind") or "rl"
    if kind not in KINDS:
        raise _fail(source, "kind", f"must be rl (Gymnasium runs) or rlhf (language-model runs), got {kind!r}")
    if kind == "rlhf" and data.get("preset") is not None:
        raise _fail(source, "preset", "does not apply to rlhf sweeps; each task has its preset (use overrides)")
    base: dict[str, Any] = dict(_mapping(data.get("overrides"), source, "overrides"))
    if data.get("steps") is not None:
        budget_key = "iterations" if kind == "rlhf" else "total_steps"
        if budget_key in base:
            raise _fail(source, f"overrides.{budget_key}", "sets the budget that `steps` sets too; keep one of them")
        base[budget_key] = data["steps"]
    algorithms = _algorithms(data["algorithms"], source, RLHF_ALGOS if kind == "rlhf" else ALGOS)
    envs = _envs(data["envs"], source)
    noises = _noise(data.get("noise"), source)
    seeds = _seeds(data.get("seeds"), source)
    rules = _cell_rules(data.get("cells"), source)
    preset = data.get("preset")
    for field, overrides in [("overrides", base), *((f"envs.{e}", o) for e, o in envs.items()),
                             *((f"noise.{n}", o) for n, o in noises.items()),
                             *((f"algorithms.{a}", {k: v for k, v in o.items() if k != "algo"}) for a, o in algorithms.items()),
                             *((f"cells[{i}].set", values) for i, (_, values) in enumerate(rules))]:
        _check_not_reserved(overrides, source, field)
    used = [False] * len(rules)
    count = len(envs) * len(noises) * len(algorithms) * len(seeds)
    if count > MAX_CELLS:
        raise _fail(source, "algorithms x envs x noise x seeds", f"the grid has {count:,} cells; a sweep takes at "
                    f"most {MAX_CELLS:,}")

    cells, keys, checked = [], set(), set()
    for env, env_overrides in envs.items():
        for noise, noise_overrides in noises.items():
            for algorithm, algo_overrides in algorithms.items():
                labels = {"algorithm": algorithm, "env": env, "noise": noise}
                resolved: dict[str, Any] = {}
                for seed in seeds:
                    overrides = {**base, **env_overrides, **noise_overrides, **algo_overrides}
                    for index, (where, values) in enumerate(rules):
                        if _matches(where, labels, seed):
                            overrides.update(values)
                            used[index] = True
                    algo = overrides.pop("algo")
                    cache_key = repr(sorted(overrides.items(), key=lambda kv: kv[0]))
                    if cache_key not in resolved:  # resolving checks the env; once per distinct setting
                        try:
                            resolved[cache_key] = _resolve(kind, algo, env, preset, overrides, checked)
                        except SymrlError as exc:
                            raise SymrlError(f"{source}: cell {algorithm} / {env} / {noise}: {exc}") from None
                    config = resolved[cache_key].replace(seed=seed)
                    key = "/".join(slug(part) for part in (env, noise, algorithm)) + f"/seed{seed}"
                    if key.lower() in keys:  # folders that differ only in case are one on macOS and Windows
                        raise _fail(source, "algorithms/noise", f"two labels map to the same folder {key}; rename one")
                    keys.add(key.lower())
                    cells.append(Cell(key=key, labels=labels, config=config))
    if not all(used):
        index = used.index(False)
        raise _fail(source, f"cells[{index}].where", f"matches no cell ({rules[index][0]}); the labels are algorithms "
                    f"{', '.join(algorithms)}, envs {', '.join(envs)}, noise {', '.join(noises)}, seeds {seeds}")
    name = str(data.get("name") or default_name)
    return Sweep(name=name, out=Path(str(data["out"])), cells=tuple(cells))
