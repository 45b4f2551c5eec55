"""Run configuration: one flat dataclass, resolved from defaults, a family preset and user overrides.

Resolution order (later wins): the dataclass defaults, the preset's ``common`` section, its section for
the algorithm family (``a2c`` for a2c/sa2c, ``ppo`` for ppo/sppo), its ``symmetric`` section for
sa2c/sppo, its per-environment overrides, then the user's overrides (CLI flags, ``--set``, keyword
arguments). The fully resolved config is written to ``config.yaml`` in the run directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Optional

import yaml

from .errors import SymrlError
from .yamlfile import load_yaml_file, read_yaml_file, yaml_error_line

if typing.TYPE_CHECKING:
    from .noise import NoiseSpec

ALGOS = ("a2c", "sa2c", "ppo", "sppo")
FAMILIES = ("atari", "minatar", "mujoco", "box2d", "classic")


MAX_STEPS = 10**11  # a budget beyond this is a typo (1e99), not a run
MAX_ENVS = 4096
MAX_BINS = 256  # per action dimension; 11 in the paper (the policy head and checkpoints grow with it)


@dataclass(frozen=True)
class Config:
    """Every setting of a training run. See ``symrl train --help`` and the README.

    Build one with :func:`make_config` (the preset of the environment's family, then the algorithm's symmetric
    weights, then overrides): ``Config(algo="sppo")`` alone has the dataclass defaults, alpha 1 and beta 0,
    i.e. plain PPO. A config is checked when it is built (a value that cannot work raises :class:`SymrlError`)
    and is immutable: change settings with :meth:`replace`, which returns a new one.
    """

    KIND: ClassVar[str] = "gym"  # the run protocol of symrl.runs.RunConfig (not fields: config.yaml stays the same)
    BUDGET: ClassVar[str] = "total_steps"
    RESUMABLE: ClassVar[frozenset] = frozenset({"total_steps", "progress"})

    # what to train
    algo: str = "ppo"
    env: str = "CartPole-v1"
    preset: Optional[str] = None
    seed: int = 0
    total_steps: int = 100_000

    # environment
    n_envs: int = 8
    # sync (this process and a worker process per further core), async (a process per env),
    # ale (Atari, C++ threads) or envpool
    vec_env: str = "sync"
    bins: int = 0
    env_kwargs: dict = field(default_factory=dict)
    norm_obs: bool = False
    norm_reward: bool = False
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    sign_reward: bool = False
    episodic_life: bool = False
    frame_stack: int = 4
    noop_max: int = 30

    # noise (training only)
    reward_noise: Optional[str] = None
    adv_noise: Optional[str] = None

    # rollout and advantages
    n_steps: int = 128
    gamma: float = 0.99
    gae_lambda: float = 0.95
    normalize_advantage: bool = True

    # update
    batch_size: Optional[int] = None
    n_epochs: int = 4
    learning_rate: float = 3e-4
    lr_schedule: str = "constant"
    clip_range: float = 0.2
    clip_schedule: str = "constant"
    clip_range_vf: Optional[float] = None
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    optimizer: str = "adam"
    optimizer_eps: float = 1e-5
    rmsprop_alpha: float = 0.99

    # symmetric loss
    alpha: float = 1.0
    beta: float = 0.0
    z: float = -1.0
    loss_variant: str = "rce"
    reverse_mask: str = "ppo"
    per_dim_reverse: bool = False
    policy_coef: float = 1.0

    # network
    network: str = "auto"
    net_arch: list = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    shared_network: bool = False
    ortho_init: bool = True
    log_std_init: float = 0.0

    # evaluation
    eval_freq: int = 5_000
    eval_episodes: int = 10  # 0 turns evaluation off
    eval_deterministic: Optional[bool] = None
    stop_return: Optional[float] = None  # stop early once an evaluation's mean return reaches this

    # run
    checkpoint_freq: int = 50_000
    device: str = "cpu"
    torch_threads: int = 0
    engine: str = "auto"  # auto: the NumPy engine for MLP policies on the CPU (symrl.fast), else torch
    # fp32, or bf16: the network bodies run under bfloat16 autocast (heads, losses and the optimiser stay
    # float32); 1.3-1.7x faster Nature CNN passes on CPUs with AVX-512 BF16 or AMX (benchmarks/atari_parts.py).
    # Not the default: it changes the numbers, and its learning was checked on fewer tasks than float32's
    precision: str = "fp32"
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    @property
    def reward_noise_spec(self) -> Optional[NoiseSpec]:
        """``reward_noise`` parsed: a :class:`~symrl.noise.NoiseSpec` (kind, value), or None when clean."""
        return self._noise[0]

    @property
    def adv_noise_spec(self) -> Optional[NoiseSpec]:
        """``adv_noise`` parsed: a :class:`~symrl.noise.NoiseSpec` (flip, p), or None."""
        return self._noise[1]

    @property
    def family(self) -> str:
        """The algorithm family: 'a2c' (a2c, sa2c) or 'ppo' (ppo, sppo)."""
        return "a2c" if self.algo in ("a2c", "sa2c") else "ppo"

    @property
    def rollout_steps(self) -> int:
        """Environment steps per rollout (one update): ``n_steps * n_envs``."""
        return self.n_steps * self.n_envs

    @property
    def planned_steps(self) -> int:
        """The steps a run trains: ``total_steps`` rounded up to whole rollouts, as in Stable-Baselines3."""
        return -(-self.total_steps // self.rollout_steps) * self.rollout_steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_file(cls, path: str | Path) -> "Config":
        """Read a ``config.yaml`` written by a run back into a :class:`Config`."""
        return config_from_file(path, cls)

    def replace(self, **overrides: Any) -> "Config":
        """A validated copy with ``overrides`` applied (converted like ``--set``). The algorithm, environment and
        preset choose the preset's settings, so they are not overrides: make a new config with make_config."""
        chosen = [key for key in ("algo", "env", "preset") if key in overrides]
        if chosen:
            raise SymrlError(f"{chosen[0]} selects the preset's settings (e.g. sppo's alpha and beta) and cannot be "
                             f"replaced; build a new config with symrl.make_config(algo, env, preset, ...)")
        data = self.to_dict()
        data.update(coerce_values(overrides))
        return Config(**data)

    def validate(self) -> "Config":
        """Raise :class:`SymrlError` on any value that cannot work, naming the fix (done when a config is built)."""
        check_types(self)
        _choice("algo", self.algo, ALGOS)
        _choice("vec_env", self.vec_env, ("sync", "async", "ale", "envpool"))
        _choice("engine", self.engine, ("auto", "torch", "numpy"))
        _choice("precision", self.precision, ("fp32", "bf16"))
        if self.precision != "fp32" and self.engine == "numpy":
            raise SymrlError("engine=numpy computes in float32 only; use engine=auto (torch for bf16) or precision=fp32")
        _choice("lr_schedule", self.lr_schedule, ("constant", "linear"))
        _choice("clip_schedule", self.clip_schedule, ("constant", "linear"))
        _choice("optimizer", self.optimizer, ("adam", "rmsprop", "rmsprop_tf"))
        _choice("loss_variant", self.loss_variant, ("rce", "mae"))
        _choice("reverse_mask", self.reverse_mask, ("ppo", "none"))
        _choice("network", self.network, ("auto", "mlp", "cnn"))
        _choice("activation", self.activation, ("tanh", "relu"))
        for name in ("total_steps", "n_envs", "n_steps", "n_epochs", "eval_freq", "checkpoint_freq"):
            if getattr(self, name) <= 0:
                raise SymrlError(f"{name} must be positive, got {getattr(self, name)}; pass a value > 0")
        if self.eval_episodes < 0:
            raise SymrlError(f"eval_episodes must be >= 0 (0 turns evaluation off), got {self.eval_episodes}")
        if self.batch_size is not None and self.batch_size <= 0:
            raise SymrlError(f"batch_size must be positive or null (full batch), got {self.batch_size}")
        if self.bins != 0 and not 2 <= self.bins <= MAX_BINS:
            raise SymrlError(f"bins must lie in [2, {MAX_BINS}] (or 0 for no discretisation; the paper uses 11), got "
                             f"{self.bins}")
        if self.total_steps > MAX_STEPS:
            raise SymrlError(f"total_steps {self.total_steps:.3g} is beyond any run ({MAX_STEPS:.0e} steps at 100,000 "
                             "steps/s would take 12 days); give a budget of at most 1e11")
        if self.n_envs > MAX_ENVS:
            raise SymrlError(f"n_envs must be at most {MAX_ENVS}, got {self.n_envs}")
        check_ranges(self, positive_finite=("learning_rate", "clip_range", "optimizer_eps"),
                     positive=("max_grad_norm", "clip_obs", "clip_reward", "clip_range_vf"),
                     non_negative=("seed", "vf_coef", "alpha", "beta", "policy_coef", "torch_threads", "noop_max"),
                     unbounded=("stop_return",))
        if self.frame_stack < 1:
            raise SymrlError(f"frame_stack must be >= 1 (1 = no stacking), got {self.frame_stack}")
        if not 0.0 <= self.rmsprop_alpha < 1.0:
            raise SymrlError(f"rmsprop_alpha (the squared-gradient decay) must lie in [0, 1), got {self.rmsprop_alpha}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise SymrlError(f"gae_lambda must lie in [0, 1], got {self.gae_lambda}")
        if not self.net_arch or not all(isinstance(h, int) and h > 0 for h in self.net_arch):
            raise SymrlError(f"net_arch must be a non-empty list of positive layer sizes, got {self.net_arch}")
        from .noise import parse_adv_noise, parse_reward_noise  # noqa: PLC0415 (NumPy: not for --help)

        # the noise specs parsed into typed values, once (the fields keep the strings that config.yaml stores)
        object.__setattr__(self, "_noise", (parse_reward_noise(self.reward_noise), parse_adv_noise(self.adv_noise)))
        return self


def check_types(cfg: Any) -> None:
    """Every field of a config built in Python holds a value of its type (as ``--set`` and YAML values are
    converted): a wrong kind, or a number given as a string, is an error naming the field."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        converted = _coerce(f.name, value, type(cfg))
        if isinstance(value, str) and not isinstance(converted, str):
            raise SymrlError(f"{f.name} must be given as {type(converted).__name__} (e.g. {converted!r}), not the "
                             f"string {value!r}")


def check_ranges(cfg: Any, positive_finite: tuple = (), positive: tuple = (), non_negative: tuple = (),
                 unbounded: tuple = ()) -> None:
    """Range checks shared by the control and language-model configs; each error names the field.

    No float field may be NaN (it passes every comparison and never means anything) or infinite, except
    ``positive`` fields, where inf means "no limit" (max_grad_norm, clip_obs...), as null does where the field
    is optional, and ``unbounded`` ones (e.g. stop_return: inf never stops). Every config
    has a discount ``gamma`` in (0, 1] and a negative, finite ``z`` ("log 0" of the reverse cross entropy).
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and math.isnan(value):
            raise SymrlError(f"{f.name} is nan; give a number")
    for name in positive_finite:
        if not 0 < getattr(cfg, name) < math.inf:
            raise SymrlError(f"{name} must be a positive finite number, got {getattr(cfg, name)}")
    for name in positive:
        if getattr(cfg, name) is not None and getattr(cfg, name) <= 0:
            raise SymrlError(f"{name} must be positive, got {getattr(cfg, name)} (inf or null: no limit, where allowed)")
    for name in non_negative:
        if getattr(cfg, name) < 0:
            raise SymrlError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if not 0.0 < cfg.gamma <= 1.0:
        raise SymrlError(f"gamma (the discount) must lie in (0, 1], got {cfg.gamma}")
    if not -math.inf < cfg.z < 0:
        raise SymrlError(f"z (log 0 in the reverse cross entropy) must be negative and finite, got {cfg.z}; the paper uses -1")
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and math.isinf(value) and f.name not in (*positive, *unbounded):
            raise SymrlError(f"{f.name} must be a finite number, got {value}")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise SymrlError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


@functools.cache
def _schema(schema: type) -> tuple[tuple[str, ...], dict]:
    """Field names and type hints of a config dataclass (computed once per class)."""
    return tuple(f.name for f in dataclasses.fields(schema)), typing.get_type_hints(schema)


FIELDS = _schema(Config)[0]


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list", dict: "a mapping"}


def _coerce(name: str, value: Any, schema: type = Config) -> Any:
    """Check that ``name`` is a field of the ``schema`` dataclass (``Config`` unless told) and convert ``value``
    to its type ("1e6" -> 1000000)."""
    fields, hints = _schema(schema)
    if name not in fields:
        close = difflib.get_close_matches(name, fields, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see the command's --help for the keys"
        raise SymrlError(f"unknown config key {name!r}; {hint}")
    hint = hints[name]
    optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if value is None:
        if optional:
            return None
        raise SymrlError(f"{name} cannot be null; give {_KINDS.get(base, base)}")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError
        if base is int:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, bool) or float(number) != int(number):
                raise ValueError
            return int(number)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            return str(value)
        if base in (list, dict):
            if not isinstance(value, base):
                raise ValueError
            return value
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite integer
        pass
    else:
        return value
    raise SymrlError(f"{name} must be {_KINDS.get(base, base)}, got {value!r}")


def coerce_values(values: dict, schema: type = Config) -> dict:
    """Check and convert ``values`` for the ``schema`` dataclass (see :func:`_coerce`)."""
    return {k: _coerce(k, v, schema) for k, v in values.items()}


def parse_set(items: list[str], schema: type = Config) -> dict:
    """Parse ``--set key=value`` items for the ``schema`` dataclass; values are read as YAML scalars/lists
    (``yaml.safe_load``)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SymrlError(f"--set expects key=value, got {item!r}; e.g. --set gamma=0.98")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return coerce_values(out, schema)


# ----------------------------------------------------------------------------------------------------
# presets


def detect_family(env_id: str) -> str:
    """The preset family of a registered Gymnasium id (:func:`symrl.envs.registry.env_family`)."""
    from .envs.registry import env_family  # noqa: PLC0415

    return env_family(env_id)




def load_preset(name_or_path: str) -> dict:
    """Load a preset by family name (packaged YAML) or from a YAML file path."""
    if name_or_path in FAMILIES:
        text = resources.files("symrl.presets").joinpath(f"{name_or_path}.yaml").read_text()
        source = f"preset {name_or_path}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise SymrlError(
                f"unknown preset {name_or_path!r}; use one of {', '.join(FAMILIES)} or a path to a YAML file"
            )
        text, source = path.read_text(), str(path)
    try:
        data = load_yaml_file(text) or {}
    except yaml.YAMLError as exc:
        raise SymrlError(f"{source} is not valid YAML ({yaml_error_line(exc)}); fix the file") from None
    _check_preset(data, source)
    return data


PRESET_SECTIONS = ("common", "a2c", "ppo", "symmetric", "envs")
ENV_SECTIONS = ("common", "a2c", "ppo", "sa2c", "sppo")


def _check_preset(data: Any, source: str) -> None:
    """A preset's shape: sections of config keys; ``symmetric`` per algorithm (sa2c, sppo); ``envs`` per
    environment name, each with ``common``/``a2c``/``ppo`` sections (the family's) and ``sa2c``/``sppo`` (the
    symmetric algorithm's: a per-task alpha/beta table). Keys are checked when a config is made."""
    def mapping(value: Any, where: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise SymrlError(f"{source}: {where} must be a mapping, got {value!r}; see symrl/presets/*.yaml for the layout")
        return value

    def known(keys: Any, allowed: tuple, where: str) -> None:
        unknown = sorted(map(str, set(keys) - set(allowed)))
        if unknown:
            raise SymrlError(f"{source}: unknown {where} {unknown[0]!r}; use {', '.join(allowed)}")

    known(mapping(data, "the file"), PRESET_SECTIONS, "section")
    for section in ("common", "a2c", "ppo"):
        mapping(data.get(section), section)
    symmetric = mapping(data.get("symmetric"), "symmetric")
    known(symmetric, ("sa2c", "sppo"), "symmetric algorithm")
    for algo, values in symmetric.items():
        mapping(values, f"symmetric.{algo}")
    for env, sections in mapping(data.get("envs"), "envs").items():
        sections = mapping(sections, f"envs.{env}")
        known(sections, ENV_SECTIONS, f"section of envs.{env}")
        for section, values in sections.items():
            mapping(values, f"envs.{env}.{section}")




def _env_key(env_id: str) -> str:
    """'ALE/Pong-v5' -> 'Pong', 'HalfCheetah-v4' -> 'HalfCheetah' (per-environment preset keys)."""
    name = env_id.split("/")[-1]
    return name.rsplit("-v", 1)[0]


def make_config(algo: str = "ppo", env: str = "CartPole-v1", preset: Optional[str] = None, **overrides: Any) -> Config:
    """Resolve a full :class:`Config` for ``algo`` on ``env`` from the preset and ``overrides``.

    ``preset`` defaults to the environment's family (atari, minatar, mujoco, box2d or classic).
    """
    _choice("algo", algo, ALGOS)
    if not isinstance(env, str) or not env:
        raise SymrlError(f"env must be a Gymnasium environment id such as 'CartPole-v1', got {env!r}")
    from .envs.registry import has_box_actions  # noqa: PLC0415

    preset_name = preset or detect_family(env)
    data = load_preset(preset_name)
    family = "a2c" if algo in ("a2c", "sa2c") else "ppo"
    values: dict = {}
    symmetric = algo in ("sa2c", "sppo")
    env_overrides = (data.get("envs") or {}).get(_env_key(env)) or {}
    # the preset's sections for this run, later ones win: the family's, then the symmetric algorithm's, each
    # first for every environment and then for this one
    sections = [data.get("common"), data.get(family), (data.get("symmetric") or {}).get(algo) if symmetric else None,
                env_overrides.get("common"), env_overrides.get(family), env_overrides.get(algo) if symmetric else None]
    for section in sections:
        if section:
            values.update(section)
    env_kwargs = overrides.get("env_kwargs", values.get("env_kwargs")) or {}
    if values.get("bins") and "bins" not in overrides and not has_box_actions(env, env_kwargs):
        values["bins"] = 0  # a preset's discretisation applies to continuous action spaces only
    values.update(overrides)
    values.update(algo=algo, env=env, preset=preset_name)
    return Config(**coerce_values(values))


def read_config_mapping(path: str | Path) -> dict:
    """The mapping stored in a run's ``config.yaml``, unvalidated (results tables read it as it is)."""
    path = Path(path)
    try:
        data = read_yaml_file(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SymrlError(f"cannot read {path} ({exc.__class__.__name__}); is this a symrl run directory?") from None
    if not isinstance(data, dict):
        raise SymrlError(f"{path} is not a symrl config; is this a symrl run directory?")
    return data


def load_config_file(path: str | Path) -> Config:
    """Read a ``config.yaml`` written by a run back into a :class:`Config`."""
    return Config.from_file(path)


def config_from_file(path: str | Path, schema: type, drop: tuple = ()) -> Any:
    """A run's ``config.yaml`` as a validated ``schema`` (``Config`` or ``RLHFConfig``), without the keys in
    ``drop``; a key or value the schema refuses is an error that names the file."""
    mapping = {k: v for k, v in read_config_mapping(path).items() if k not in drop}
    try:
        return schema(**coerce_values(mapping, schema))  # checked as it is built
    except SymrlError as exc:
        raise SymrlError(f"{path}: {exc}") from None
